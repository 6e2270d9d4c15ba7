"""The Helm chart: helm lint, strict Kubernetes 1.31 validation, and the values schema."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tests.deploy.helpers import (
    CHART_DIR,
    EXAMPLES,
    EXAMPLES_DIR,
    KUBERNETES_VERSION,
    HelmError,
    Manifest,
    Render,
    example_values,
    validate_strictly,
)

# ---- helm lint and strict validation -----------------------------------------------------------------------


@pytest.mark.parametrize("example", EXAMPLES)
def test_helm_lint_strict_passes_with_each_example(
    helm: Callable[[Sequence[str]], str], example: str
) -> None:
    arguments = ["lint", "--strict", str(CHART_DIR), "--values", str(example_values(example))]
    output = helm([*arguments, "--kube-version", KUBERNETES_VERSION])
    assert "0 chart(s) failed" in output
    assert "[WARNING]" not in output and "[ERROR]" not in output


@pytest.mark.parametrize("example", EXAMPLES)
def test_each_example_validates_strictly_against_kubernetes_1_31(
    rendered: dict[str, list[Manifest]], example: str
) -> None:
    manifests = rendered[example]
    kinds = {manifest["kind"] for manifest in manifests}
    assert {"StatefulSet", "ConfigMap", "Service", "ServiceAccount"} <= kinds
    for manifest in manifests:
        validate_strictly(manifest)


def test_examples_are_the_three_documented_files() -> None:
    assert sorted(path.stem for path in EXAMPLES_DIR.glob("*.yaml")) == sorted(EXAMPLES)


def _good_deployment() -> Manifest:
    """A minimal valid apps/v1 Deployment."""
    labels = {"app": "x"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "x", "image": "example.org/x:1.0"}]},
            },
        },
    }


def test_strict_validation_accepts_a_good_manifest() -> None:
    validate_strictly(_good_deployment())


def test_strict_validation_rejects_an_unknown_field() -> None:
    manifest = _good_deployment()
    manifest["spec"]["replicaz"] = 2
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_strictly(manifest)


def test_strict_validation_rejects_a_wrong_type() -> None:
    manifest = _good_deployment()
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    container["ports"] = [{"containerPort": "7443"}]
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_strictly(manifest)


@pytest.mark.parametrize(
    ("api_version", "kind"),
    [
        ("apps/v1", "Deploymint"),
        ("apps/v1beta1", "Deployment"),
        ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ],
)
def test_strict_validation_rejects_an_unknown_kind_or_api_version(api_version: str, kind: str) -> None:
    manifest = _good_deployment()
    manifest["apiVersion"] = api_version
    manifest["kind"] = kind
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        validate_strictly(manifest)


# ---- the values schema -------------------------------------------------------------------------------------


@pytest.mark.parametrize("example", EXAMPLES)
def test_a_string_port_is_rejected(render: Render, example: str) -> None:
    with pytest.raises(HelmError, match=r"/ports/health.*want integer"):
        render(example_values(example), set_strings=["ports.health=7444"])


@pytest.mark.parametrize("example", EXAMPLES)
def test_a_missing_certificate_secret_is_rejected(render: Render, example: str, tmp_path: Path) -> None:
    values = yaml.safe_load(example_values(example).read_text())
    del values["tls"]
    stripped = tmp_path / "values.yaml"
    stripped.write_text(yaml.safe_dump(values))
    with pytest.raises(HelmError, match=r"/tls/existingSecret"):
        render(stripped)


def test_the_chart_defaults_alone_are_rejected_for_lack_of_a_certificate_secret(render: Render) -> None:
    with pytest.raises(HelmError, match=r"/tls/existingSecret"):
        render()


def test_a_silo_without_a_coordinator_host_is_rejected(render: Render) -> None:
    with pytest.raises(HelmError, match=r"/silo/coordinator/host"):
        render(example_values("silo-cpu"), sets=["silo.coordinator.host="])


def test_a_silo_without_its_own_budget_is_rejected(render: Render, tmp_path: Path) -> None:
    values = yaml.safe_load(example_values("silo-cpu").read_text())
    del values["config"]["privacy"]["max_epsilon"]
    stripped = tmp_path / "values.yaml"
    stripped.write_text(yaml.safe_dump(values))
    with pytest.raises(HelmError, match=r"/config/privacy.*max_epsilon"):
        render(stripped)


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["image.tag=latest"], r"/image/tag"),
        (["role=worker"], r"/role"),
        (["ports.grpc=70000"], r"/ports/grpc"),
        (["silo.data.volume.hostPath.path=/srv"], r"/silo/data/volume"),
        (["securityContext.runAsNonRoot=false"], r"/securityContext/runAsNonRoot"),
        (["serviceMonitor.enabled=yes"], r"/serviceMonitor/enabled"),
        (["tls.existingSecret=Not_A_Name"], r"/tls/existingSecret"),
        (["unknownKey=1"], r"unknownKey"),
    ],
)
def test_other_wrong_values_are_rejected(render: Render, sets: list[str], message: str) -> None:
    with pytest.raises(HelmError, match=message):
        render(example_values("coordinator"), sets=sets)


def test_schema_is_draft_07() -> None:
    schema = yaml.safe_load((CHART_DIR / "values.schema.json").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
