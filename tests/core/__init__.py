"""Tests of the algorithm core: aggregation, selection policies and the AS-LoRA score."""
