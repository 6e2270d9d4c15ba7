"""Builders for the gRPC tests: config files, an in-process coordinator, raw stubs, text files."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aslora_cli.federation_files import toml_text
from aslora_coordinator.config import CoordinatorConfig
from aslora_coordinator.config_loader import load_coordinator_config
from tests.training.helpers import small_texts


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
        "privacy": {"noise_multiplier": 1.0, "secure_noise": False},
        "training": {"local_steps": 2, "batch_size": 8, "lr": 0.5},
    }


def load_config(path: Path, tables: Mapping[str, Mapping[str, Any]]) -> CoordinatorConfig:
    """Write `tables` as TOML to `path` and load it as the coordinator does."""
    path.write_text(toml_text(tables))
    return load_coordinator_config(path)
