"""Paths, names and small helpers shared by the deployment tests."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = REPO_ROOT / "deploy" / "helm" / "aslora"
EXAMPLES_DIR = REPO_ROOT / "deploy" / "helm" / "examples"
EXAMPLES = ("coordinator", "coordinator-service", "silo-gpu", "silo-cpu")
HELM_PATH = REPO_ROOT / "tools" / "bin" / "helm"
RELEASE = "fed"
NAMESPACE = "aslora"
KUBERNETES_VERSION = "1.31.0"

Manifest = dict[str, Any]
Render = Callable[..., list[Manifest]]


class HelmError(AssertionError):
    """A helm command exited with a non-zero status."""


def example_values(name: str) -> Path:
    """The path of one example values file."""
    return EXAMPLES_DIR / f"{name}.yaml"


def only(manifests: list[Manifest], kind: str, name: str | None = None) -> Manifest:
    """The single manifest of `kind` (and `name`, when given)."""
    found = [
        item
        for item in manifests
        if item["kind"] == kind and (name is None or item["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def pod_spec(manifests: list[Manifest]) -> Manifest:
    """The pod template spec of the release's StatefulSet."""
    spec: Manifest = only(manifests, "StatefulSet")["spec"]["template"]["spec"]
    return spec


def main_container(manifests: list[Manifest]) -> Manifest:
    """The single container of the release's pod."""
    containers: list[Manifest] = pod_spec(manifests)["containers"]
    assert len(containers) == 1
    return containers[0]


HEALTH_PORT = 7444
GRPC_PORT = 7443
METRICS_PORT = 9464
TLS_DIR = "/etc/aslora/tls"
STATE_DIR = "/var/lib/aslora"
PROBES = ("startupProbe", "livenessProbe", "readinessProbe")


def config_toml(manifests: list[Manifest]) -> dict[str, Any]:
    """The rendered configuration file, parsed."""
    data: dict[str, str] = only(manifests, "ConfigMap")["data"]
    assert len(data) == 1
    return tomllib.loads(next(iter(data.values())))


def validate_strictly(manifest: Manifest) -> None:
    """Validate one manifest against the Kubernetes 1.31 strict schemas; raise on any problem.

    kubernetes_validate.validate raises ValidationError for a bad or unknown field and SchemaNotFoundError
    for a kind or apiVersion it has no schema for; only its command line turns the latter into a warning.
    """
    kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
