"""`aslora silo run` refuses a config that leaves the silo's guarantee to the coordinator, or asks for more
training devices than the node has, before it loads a model: exit 2, naming the key (and what the node
has)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from aslora_core.config import AccountantKind, ConfigError, Precision
from aslora_silo.config import DEFAULT_MAX_DELTA, RankSettings, SiloPrivacy, load_silo_config
from aslora_silo.rank_devices import DevicesUnavailableError, check_devices, cpu_cores
from tests.grpc.helpers import write_tsv

USAGE_EXIT_CODE = 2
RUN_TIMEOUT_SECONDS = 120.0


def _silo_run(config: Path, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aslora_cli", "silo", "run", "--config", str(config), "--insecure", *options],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_SECONDS,
        check=False,
    )


def _config(tmp_path: Path, privacy: str) -> Path:
    """A silo config whose model folder does not exist: any attempt to load it would fail differently."""
    path = tmp_path / "silo.toml"
    path.write_text(
        f'model_path = "{tmp_path / "no-model-here"}"\n[silo]\nname = "silo-a"\n'
        '[coordinator]\naddress = "127.0.0.1:7443"\n'
        f'[data]\ntrain_path = "{write_tsv(tmp_path / "train.tsv", 8)}"\n' + privacy
    )
    return path


def test_a_silo_without_its_own_budget_is_refused_naming_the_key(tmp_path: Path) -> None:
    outcome = _silo_run(_config(tmp_path, "[privacy]\nmax_delta = 1e-6\n"))
    assert outcome.returncode == USAGE_EXIT_CODE, outcome.stderr
    assert "[privacy] max_epsilon is required" in outcome.stderr
    assert "no-model-here" not in outcome.stderr


def test_a_delta_of_one_is_refused_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[privacy\] max_delta"):
        load_silo_config(_config(tmp_path, "[privacy]\nmax_epsilon = 8.0\nmax_delta = 1.0\n"))


def test_the_silos_privacy_defaults_are_the_safe_ones(tmp_path: Path) -> None:
    privacy = load_silo_config(_config(tmp_path, "[privacy]\nmax_epsilon = 8.0\n")).privacy
    assert privacy == SiloPrivacy(max_epsilon=8.0)
    assert privacy.max_delta == DEFAULT_MAX_DELTA
    assert privacy.accountant is AccountantKind.PRV
    assert not privacy.test_mode and not privacy.allow_non_private


def test_a_silo_computes_in_the_precision_its_config_names(tmp_path: Path) -> None:
    privacy = "[privacy]\nmax_epsilon = 8.0\n"
    assert load_silo_config(_config(tmp_path, privacy)).compute.precision is Precision.FLOAT32
    chosen = load_silo_config(_config(tmp_path, privacy + '[training]\nprecision = "bfloat16"\n'))
    assert chosen.compute.precision is Precision.BFLOAT16
    with pytest.raises(ConfigError, match=r"precision"):
        load_silo_config(_config(tmp_path, privacy + '[training]\nprecision = "float16"\n'))


def test_ghost_clipping_in_bfloat16_stops_the_silo_naming_the_pair(tmp_path: Path) -> None:
    training = '[training]\nprecision = "bfloat16"\nclipping_engine = "ghost"\n'
    outcome = _silo_run(_config(tmp_path, "[privacy]\nmax_epsilon = 8.0\n" + training))
    assert outcome.returncode == USAGE_EXIT_CODE, outcome.stderr
    assert 'clipping_engine = "ghost" with precision = "bfloat16"' in outcome.stderr
    assert "no-model-here" not in outcome.stderr


def test_more_devices_than_the_node_has_are_refused_naming_what_it_has(tmp_path: Path) -> None:
    config = _config(tmp_path, "[privacy]\nmax_epsilon = 8.0\n")
    assert load_silo_config(config).ranks == RankSettings()
    too_many = cpu_cores() + 1
    outcome = _silo_run(config, "--devices", str(too_many))
    assert outcome.returncode == USAGE_EXIT_CODE, outcome.stderr
    assert f"devices = {too_many}, but this node has {cpu_cores()} CPU core(s)" in outcome.stderr
    assert "no-model-here" not in outcome.stderr


def test_the_devices_key_is_read_and_a_device_index_with_several_ranks_is_refused(tmp_path: Path) -> None:
    privacy = "[privacy]\nmax_epsilon = 8.0\n"
    two = load_silo_config(_config(tmp_path, privacy + "[training]\ndevices = 2\nrank_timeout_seconds = 5\n"))
    assert two.ranks == RankSettings(devices=2, timeout_seconds=5.0)
    with pytest.raises(ConfigError, match=r"\[training\] devices must be at least 1"):
        load_silo_config(_config(tmp_path, privacy + "[training]\ndevices = 0\n"))
    with pytest.raises(DevicesUnavailableError, match=r'device = "cuda:1" names one GPU'):
        check_devices("cuda:1", 2)
    check_devices("cuda:1", 1)  # one rank may name its GPU
