"""Tests of the Kubernetes deployment: the Helm chart, the container build files and the helm installer."""
