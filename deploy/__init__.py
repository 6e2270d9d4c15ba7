"""Deployment helpers kept in the repository: the helm installer used by the chart tests."""
