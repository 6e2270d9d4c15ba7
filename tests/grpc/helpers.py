"""Builders for the gRPC tests: config files, an in-process coordinator, raw stubs, text files."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aslora.v1 import federation_pb2, federation_pb2_grpc
from aslora_cli.federation_files import toml_text
from aslora_coordinator.config import CoordinatorConfig, RunConfig
from aslora_coordinator.config_loader import load_coordinator_config
from aslora_core.config import FederationSettings, LoraSettings, PrivacySettings, TaskName, TrainingSettings
from aslora_rpc.messages import RunPlan
from aslora_rpc.settings_file import TomlValue
from tests.training.helpers import small_texts

SERVED_RUN_WAIT_SECONDS = 10.0
TEST_SILO_BUDGET = 100.0
"""A silo's max_epsilon that no test run reaches (the budget tests set their own)."""


def silo_privacy_table(**overrides: TomlValue) -> dict[str, TomlValue]:
    """A silo's [privacy] table for tests: a budget no test run reaches, and test mode (seeded noise and
    sampling when the coordinator's plan asks for it); `overrides` replace or add keys."""
    return {"max_epsilon": TEST_SILO_BUDGET, "test_mode": True, **overrides}


def silo_privacy_toml(**overrides: TomlValue) -> str:
    """`silo_privacy_table` as a [privacy] TOML table."""
    return toml_text({"privacy": silo_privacy_table(**overrides)})


def write_tsv(path: Path, count: int, offset: int = 0) -> Path:
    """`count` small labelled texts as a GLUE-style TSV file."""
    rows = ["label\tsentence"]
    rows += [f"{e.label}\t{e.text}" for e in small_texts(count + offset).examples[offset:]]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def coordinator_tables(model_dir: Path, **federation: Any) -> dict[str, dict[str, Any]]:
    """A small loopback coordinator config as TOML tables; `federation` overrides [federation] keys."""
    return {
        "": {"model_path": str(model_dir), "labels": ["0", "1"]},
        "server": {"listen": "127.0.0.1:0", "max_wait_seconds": 1, "linger_seconds": 0},
        "health": {"listen": "127.0.0.1:0"},
        "federation": {"policy": "aslora", "rounds": 3, "seed": 1, "min_silos": 1, **federation},
        "lora": {"rank": 4, "alpha": 8},
        "privacy": {"noise_multiplier": 1.0, "test_mode": True},
        "training": {"local_steps": 2, "batch_size": 8, "lr": 0.5},
    }


def load_config(path: Path, tables: Mapping[str, Mapping[str, Any]]) -> CoordinatorConfig:
    """Write `tables` as TOML to `path` and load it as the coordinator does."""
    path.write_text(toml_text(tables))
    return load_coordinator_config(path)


def load_run_config(path: Path, tables: Mapping[str, Mapping[str, Any]]) -> RunConfig:
    """The run a coordinator config of `tables` holds (written to `path` and loaded as the coordinator
    does)."""
    run = load_config(path, tables).run
    assert run is not None, "the config holds no run"
    return run


def served_run_id(stub: federation_pb2_grpc.FederationStub) -> str:
    """The id of the run the coordinator serves (what a silo checks before it registers)."""
    response = stub.GetRun(federation_pb2.GetRunRequest(wait_seconds=SERVED_RUN_WAIT_SECONDS), timeout=30)
    assert response.HasField("plan"), "no run is being served"
    return response.plan.run_id


def small_run_plan(*, rounds: int, local_steps: int, test_mode: bool) -> RunPlan:
    """The run plan of a small two-class run on the tiny model (LoRA rank 4, batches of 8)."""
    return RunPlan(
        run_id="run",
        federation=FederationSettings(policy="aslora", rounds=rounds, seed=0),
        task=TaskName.SEQUENCE_CLASSIFICATION,
        label_names=("0", "1"),
        lora=LoraSettings(rank=4, alpha=8),
        training=TrainingSettings(local_steps=local_steps, batch_size=8, lr=0.5),
        privacy=PrivacySettings(noise_multiplier=1.0, test_mode=test_mode),
        chunk_bytes=1 << 20,
        base_model_fingerprint="f" * 64,
    )
