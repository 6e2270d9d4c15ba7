"""The chart's security posture as rendered: non-root pods, read-only TLS material and the deny list."""

from __future__ import annotations

import pytest
import yaml

from tests.deploy.helpers import (
    EXAMPLES,
    TLS_DIR,
    Manifest,
    Render,
    config_toml,
    example_values,
    main_container,
    pod_spec,
)


@pytest.mark.parametrize("example", EXAMPLES)
def test_pods_run_as_non_root_with_a_read_only_root_and_no_capabilities(
    rendered: dict[str, list[Manifest]], example: str
) -> None:
    spec = pod_spec(rendered[example])
    container = main_container(rendered[example])
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == 10001
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    context = container["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    mounts = {mount["mountPath"]: mount for mount in container["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]


@pytest.mark.parametrize("example", EXAMPLES)
def test_tls_secret_is_mounted_read_only_and_named_in_the_config(
    rendered: dict[str, list[Manifest]], example: str
) -> None:
    expected_secret = yaml.safe_load(example_values(example).read_text())["tls"]["existingSecret"]
    container = main_container(rendered[example])
    mount = next(mount for mount in container["volumeMounts"] if mount["mountPath"] == TLS_DIR)
    assert mount["readOnly"] is True
    volume = next(
        volume for volume in pod_spec(rendered[example])["volumes"] if volume["name"] == mount["name"]
    )
    assert volume["secret"]["secretName"] == expected_secret
    assert volume["secret"]["defaultMode"] == 0o440
    assert {item["key"] for item in volume["secret"]["items"]} == {"ca.crt", "tls.crt", "tls.key"}
    assert config_toml(rendered[example])["tls"] == {
        "ca_cert": f"{TLS_DIR}/ca.crt",
        "cert": f"{TLS_DIR}/tls.crt",
        "key": f"{TLS_DIR}/tls.key",
    }


def test_the_deny_list_config_map_is_mounted_read_only_and_named_in_the_config(render: Render) -> None:
    manifests = render(
        example_values("coordinator"),
        sets=["coordinator.revocationList.configMap=aslora-revoked", "config.security.allowed_silos={a,b}"],
    )
    container = main_container(manifests)
    mount = next(m for m in container["volumeMounts"] if m["name"] == "revocation")
    assert mount["readOnly"] is True
    volume = next(v for v in pod_spec(manifests)["volumes"] if v["name"] == "revocation")
    assert volume["configMap"] == {
        "name": "aslora-revoked",
        "items": [{"key": "revoked.json", "path": "revoked.json"}],
    }
    security = config_toml(manifests)["security"]
    assert security == {
        "revocation_list": f"{mount['mountPath']}/revoked.json",
        "allowed_silos": ["a", "b"],
    }


def test_without_a_deny_list_nothing_is_mounted_for_it(rendered: dict[str, list[Manifest]]) -> None:
    volumes = pod_spec(rendered["coordinator"])["volumes"]
    assert all(volume["name"] != "revocation" for volume in volumes)
    assert "security" not in config_toml(rendered["coordinator"])
