"""Tests of the federation's private CA and mutual TLS."""
