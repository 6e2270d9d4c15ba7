"""The Helm chart's rendered manifests: probes, images, state, config, services, policies, silos."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.deploy.helpers import (
    CHART_DIR,
    EXAMPLES,
    EXAMPLES_DIR,
    GRPC_PORT,
    HEALTH_PORT,
    METRICS_PORT,
    NAMESPACE,
    PROBES,
    STATE_DIR,
    TLS_DIR,
    Manifest,
    Render,
    config_toml,
    example_values,
    main_container,
    only,
    pod_spec,
    validate_strictly,
)

# ---- what the rendered pods look like ----------------------------------------------------------------------


@pytest.mark.parametrize("example", EXAMPLES)
def test_probes_are_grpc_health_checks_on_the_health_port(
    rendered: dict[str, list[Manifest]], example: str
) -> None:
    container = main_container(rendered[example])
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports["health"] == HEALTH_PORT
    for probe_name in PROBES:
        probe = container[probe_name]
        assert set(probe) & {"httpGet", "tcpSocket", "exec"} == set()
        assert probe["grpc"]["port"] == HEALTH_PORT
    assert config_toml(rendered[example])["health"]["listen"].endswith(f":{HEALTH_PORT}")


def test_the_health_port_setting_moves_probes_container_port_and_config_together(render: Render) -> None:
    manifests = render(example_values("coordinator"), sets=["ports.health=8444"])
    container = main_container(manifests)
    assert {probe: container[probe]["grpc"]["port"] for probe in PROBES} == dict.fromkeys(PROBES, 8444)
    assert {"name": "health", "containerPort": 8444, "protocol": "TCP"} in container["ports"]
    assert config_toml(manifests)["health"]["listen"] == "0.0.0.0:8444"


@pytest.mark.parametrize("example", EXAMPLES)
def test_images_are_pinned_never_latest(rendered: dict[str, list[Manifest]], example: str) -> None:
    spec = pod_spec(rendered[example])
    for container in spec["containers"] + spec.get("initContainers", []):
        image: str = container["image"]
        name, _, tag = image.rpartition(":")
        assert "@sha256:" in image or (name and tag and tag != "latest" and "/" not in tag), image


def test_the_image_can_be_pinned_by_digest(render: Render) -> None:
    digest = "sha256:" + "ab" * 32
    manifests = render(example_values("coordinator"), sets=[f"image.digest={digest}"])
    assert main_container(manifests)["image"] == f"ghcr.io/aslora/aslora@{digest}"


@pytest.mark.parametrize("example", EXAMPLES)
def test_state_directory_is_on_a_persistent_volume_claim(
    rendered: dict[str, list[Manifest]], example: str
) -> None:
    statefulset = only(rendered[example], "StatefulSet")
    claims = {claim["metadata"]["name"]: claim for claim in statefulset["spec"]["volumeClaimTemplates"]}
    container = main_container(rendered[example])
    state_mount = next(mount for mount in container["volumeMounts"] if mount["mountPath"] == STATE_DIR)
    assert state_mount["name"] in claims
    assert state_mount.get("readOnly", False) is False
    assert state_mount["name"] not in {volume["name"] for volume in pod_spec(rendered[example])["volumes"]}
    assert claims[state_mount["name"]]["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert statefulset["spec"]["replicas"] == 1
    assert statefulset["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Retain"


def test_coordinator_state_claim_size_comes_from_values(rendered: dict[str, list[Manifest]]) -> None:
    statefulset = only(rendered["coordinator"], "StatefulSet")
    claim = statefulset["spec"]["volumeClaimTemplates"][0]
    assert claim["spec"]["resources"]["requests"]["storage"] == "5Gi"


@pytest.mark.parametrize(
    ("example", "arguments"),
    [
        ("coordinator", ["coordinator", "serve", "--config", "/etc/aslora/coordinator.toml"]),
        ("silo-gpu", ["silo", "run", "--config", "/etc/aslora/silo.toml"]),
        ("silo-cpu", ["silo", "run", "--config", "/etc/aslora/silo.toml"]),
    ],
)
def test_container_command_and_config_mount(
    rendered: dict[str, list[Manifest]], example: str, arguments: list[str]
) -> None:
    container = main_container(rendered[example])
    assert container["command"] + container["args"] == ["aslora", *arguments, "--state-dir", STATE_DIR]
    config_path = arguments[-1]
    mount = next(mount for mount in container["volumeMounts"] if mount["mountPath"] == config_path)
    assert mount["readOnly"] is True
    volume = next(
        volume for volume in pod_spec(rendered[example])["volumes"] if volume["name"] == mount["name"]
    )
    configmap = only(rendered[example], "ConfigMap")
    assert volume["configMap"]["name"] == configmap["metadata"]["name"]
    assert mount["subPath"] in configmap["data"]


def test_coordinator_config_is_toml_with_integers_kept_integers(rendered: dict[str, list[Manifest]]) -> None:
    config = config_toml(rendered["coordinator"])
    assert config["server"]["listen"] == f"0.0.0.0:{GRPC_PORT}"
    assert config["metrics"]["listen"] == f"0.0.0.0:{METRICS_PORT}"
    assert config["federation"]["rounds"] == 50
    assert isinstance(config["federation"]["rounds"], int)
    assert config["federation"]["score"]["ema"] == 0.5
    assert config["privacy"]["delta"] == pytest.approx(1e-5)
    assert config["lora"]["target_modules"] == ["query", "value"]


def test_whole_numbers_in_nested_maps_and_lists_render_as_integers(render: Render, tmp_path: Path) -> None:
    extra = tmp_path / "extra.yaml"
    extra.write_text("config:\n  grid:\n    - {sizes: [1, 2], scale: 0.25}\n  matrix: [[3, 4.5], [6]]\n")
    config = config_toml(render(example_values("coordinator"), extra))
    assert config["grid"] == [{"sizes": [1, 2], "scale": 0.25}]
    assert config["matrix"] == [[3, 4.5], [6]]
    assert [type(value) for value in config["grid"][0]["sizes"] + config["matrix"][1]] == [int, int, int]


def test_the_chart_owns_tls_and_listen_keys_over_free_form_config(render: Render) -> None:
    manifests = render(
        example_values("coordinator"),
        sets=["config.tls.cert=/elsewhere.crt", "config.tls.min_version=TLSv1.3", "config.server.listen=x:1"],
    )
    config = config_toml(manifests)
    assert config["tls"]["cert"] == f"{TLS_DIR}/tls.crt"
    assert config["tls"]["min_version"] == "TLSv1.3"
    assert config["server"]["listen"] == f"0.0.0.0:{GRPC_PORT}"


def test_config_changes_roll_the_pod(render: Render) -> None:
    def checksum(manifests: list[Manifest]) -> str:
        annotations = only(manifests, "StatefulSet")["spec"]["template"]["metadata"]["annotations"]
        value: str = annotations["checksum/config"]
        return value

    before = render(example_values("coordinator"))
    after = render(example_values("coordinator"), sets=["config.federation.rounds=51"])
    assert checksum(before) != checksum(after)


# ---- services, metrics, ServiceMonitor, NetworkPolicy ------------------------------------------------------


def test_coordinator_services_expose_grpc_and_metrics(rendered: dict[str, list[Manifest]]) -> None:
    manifests = rendered["coordinator"]
    services = {item["metadata"]["name"]: item for item in manifests if item["kind"] == "Service"}
    grpc = services["fed-aslora"]
    assert grpc["spec"]["type"] == "LoadBalancer"
    assert grpc["spec"]["ports"] == [
        {"name": "grpc", "port": GRPC_PORT, "targetPort": "grpc", "protocol": "TCP", "appProtocol": "grpc"}
    ]
    metrics = services["fed-aslora-metrics"]
    assert metrics["spec"]["ports"][0]["targetPort"] == "metrics"
    container_ports = {port["name"]: port["containerPort"] for port in main_container(manifests)["ports"]}
    assert container_ports == {"grpc": GRPC_PORT, "health": HEALTH_PORT, "metrics": METRICS_PORT}
    pod_labels = only(manifests, "StatefulSet")["spec"]["template"]["metadata"]["labels"]
    for service in services.values():
        assert service["spec"]["selector"].items() <= pod_labels.items()


@pytest.mark.parametrize("example", ["silo-gpu", "silo-cpu"])
def test_a_silo_listens_on_no_grpc_port(rendered: dict[str, list[Manifest]], example: str) -> None:
    manifests = rendered[example]
    assert "grpc" not in {port["name"] for port in main_container(manifests)["ports"]}
    for service in (item for item in manifests if item["kind"] == "Service"):
        assert "grpc" not in {port["name"] for port in service["spec"]["ports"]}
    assert config_toml(manifests)["coordinator"]["address"] == "coordinator.aslora.example.org:7443"
    assert "server" not in config_toml(manifests)


@pytest.mark.parametrize("example", EXAMPLES)
def test_the_service_monitor_is_off_in_the_examples(
    rendered: dict[str, list[Manifest]], example: str
) -> None:
    assert "ServiceMonitor" not in {item["kind"] for item in rendered[example]}


@pytest.mark.parametrize("example", EXAMPLES)
def test_the_service_monitor_selects_the_metrics_service_and_port(render: Render, example: str) -> None:
    manifests = render(
        example_values(example),
        sets=["serviceMonitor.enabled=true", "serviceMonitor.labels.release=kube-prometheus-stack"],
    )
    monitor = only(manifests, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    selected = [
        item
        for item in manifests
        if item["kind"] == "Service"
        and monitor["spec"]["selector"]["matchLabels"].items() <= item["metadata"]["labels"].items()
    ]
    assert [service["metadata"]["name"] for service in selected] == ["fed-aslora-metrics"]
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = monitor["spec"]["endpoints"]
    (service_port,) = selected[0]["spec"]["ports"]
    assert endpoint["port"] == service_port["name"] == "metrics"
    assert endpoint["path"] == "/metrics"
    container_ports = {port["name"]: port["containerPort"] for port in main_container(manifests)["ports"]}
    assert container_ports[service_port["targetPort"]] == METRICS_PORT
    # Everything else still validates strictly; only the CRD kind is outside the core schemas.
    for manifest in manifests:
        if manifest["kind"] != "ServiceMonitor":
            validate_strictly(manifest)


def test_coordinator_network_policy_opens_grpc_and_metrics_only(rendered: dict[str, list[Manifest]]) -> None:
    policy = only(rendered["coordinator"], "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert policy["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "coordinator"
    grpc_rule, metrics_rule = policy["ingress"]
    assert grpc_rule == {"ports": [{"port": GRPC_PORT, "protocol": "TCP"}]}
    assert metrics_rule["ports"] == [{"port": METRICS_PORT, "protocol": "TCP"}]
    assert metrics_rule["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]
    egress_ports = [port["port"] for rule in policy["egress"] for port in rule["ports"]]
    assert egress_ports == [53, 53]


def test_silo_network_policy_allows_egress_to_the_coordinator(rendered: dict[str, list[Manifest]]) -> None:
    policy = only(rendered["silo-gpu"], "NetworkPolicy")["spec"]
    assert [rule["ports"] for rule in policy["ingress"]] == [[{"port": METRICS_PORT, "protocol": "TCP"}]]
    coordinator_rule = policy["egress"][-1]
    assert coordinator_rule == {
        "ports": [{"port": GRPC_PORT, "protocol": "TCP"}],
        "to": [{"ipBlock": {"cidr": "203.0.113.10/32"}}],
    }


# ---- silo specifics ----------------------------------------------------------------------------------------


def test_gpu_silo_requests_a_gpu_and_mounts_its_data_claim(rendered: dict[str, list[Manifest]]) -> None:
    manifests = rendered["silo-gpu"]
    container = main_container(manifests)
    assert container["resources"]["requests"]["nvidia.com/gpu"] == 1
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    spec = pod_spec(manifests)
    assert spec["runtimeClassName"] == "nvidia"
    data = next(volume for volume in spec["volumes"] if volume["name"] == "data")
    assert data["persistentVolumeClaim"] == {"claimName": "hospital-a-training-data", "readOnly": True}
    mount = next(mount for mount in container["volumeMounts"] if mount["name"] == "data")
    assert mount == {"name": "data", "mountPath": "/data", "readOnly": True}
    assert main_container(manifests)["image"].endswith(":0.1.0-cuda")


def test_the_gpu_count_is_the_silos_training_ranks_with_shared_memory_for_several(render: Render) -> None:
    one = render(example_values("silo-gpu"))
    assert config_toml(one)["training"] == {
        "device": "cuda",
        "devices": 1,
        "physical_batch_size": 256,
        "max_length": 128,
    }
    assert "shm" not in {volume["name"] for volume in pod_spec(one)["volumes"]}
    four = render(example_values("silo-gpu"), sets=["silo.gpu.count=4"])
    assert config_toml(four)["training"]["devices"] == 4
    assert main_container(four)["resources"]["limits"]["nvidia.com/gpu"] == 4
    shm = next(volume for volume in pod_spec(four)["volumes"] if volume["name"] == "shm")
    assert shm["emptyDir"] == {"medium": "Memory", "sizeLimit": "8Gi"}
    assert {"name": "shm", "mountPath": "/dev/shm"} in main_container(four)["volumeMounts"]
    for manifest in four:
        validate_strictly(manifest)


def test_cpu_silo_requests_no_gpu_and_mounts_nfs_data(rendered: dict[str, list[Manifest]]) -> None:
    manifests = rendered["silo-cpu"]
    container = main_container(manifests)
    assert "nvidia.com/gpu" not in container["resources"].get("limits", {})
    assert "nvidia.com/gpu" not in container["resources"].get("requests", {})
    spec = pod_spec(manifests)
    assert "runtimeClassName" not in spec
    data = next(volume for volume in spec["volumes"] if volume["name"] == "data")
    assert data["nfs"]["server"] == "nfs.bank-b.internal"
    assert all("hostPath" not in volume for volume in spec["volumes"])


def test_a_silo_without_data_has_no_data_volume(render: Render) -> None:
    manifests = render(example_values("silo-cpu"), sets=["silo.data.volume=null"])
    assert "data" not in {volume["name"] for volume in pod_spec(manifests)["volumes"]}
    for manifest in manifests:
        validate_strictly(manifest)


# ---- the chart's own files ---------------------------------------------------------------------------------

_KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z][\w.-]*):")


def test_every_key_in_values_yaml_has_a_comment_above_it() -> None:
    lines = (CHART_DIR / "values.yaml").read_text().splitlines()
    undocumented = []
    list_indent: int | None = None
    for number, line in enumerate(lines):
        stripped = line.lstrip()
        indent = len(line) - len(stripped)
        if list_indent is not None and stripped and indent <= list_indent and not stripped.startswith("- "):
            list_indent = None
        if stripped.startswith("- "):
            list_indent = indent if list_indent is None else min(list_indent, indent)
            continue
        match = _KEY_LINE.match(line)
        if match is None or list_indent is not None:
            continue
        previous = lines[number - 1].strip() if number else ""
        if not previous.startswith("#"):
            undocumented.append(f"line {number + 1}: {match['key']}")
    assert undocumented == []


def test_no_latest_tag_anywhere_in_the_chart_or_examples() -> None:
    files = [*CHART_DIR.rglob("*.yaml"), *EXAMPLES_DIR.glob("*.yaml")]
    for path in files:
        for value in _strings(yaml.safe_load(path.read_text()) if "templates" not in path.parts else None):
            assert not value.endswith(":latest"), f"{path}: {value}"
    chart = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    defaults = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    assert defaults["image"]["tag"] == chart["appVersion"]
    for example in EXAMPLES:
        tag = yaml.safe_load(example_values(example).read_text())["image"]["tag"]
        assert tag.startswith(chart["appVersion"]) and tag != "latest"


def _strings(value: object) -> list[str]:
    """Every string inside a parsed YAML document."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for item in value.values() for text in _strings(item)]
    if isinstance(value, list):
        return [text for item in value for text in _strings(item)]
    return []
