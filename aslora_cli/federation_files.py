"""The files `aslora simulate --transport grpc` hands its processes: data shards and TOML configs."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from aslora_core.config import SimulationSettings
from aslora_core.data import LabelledTexts

TEXT_COLUMN = "text"
PAIR_COLUMN = "text_pair"
LABEL_COLUMN = "label"
TomlValue = str | int | float | bool | list[str]
PROCESS_PATIENCE_SECONDS = 600.0
"""How long any process of a simulation waits for another before giving up (all stop by themselves)."""
LINGER_SECONDS = 120.0
"""The coordinator serves this long after the run (the launcher fetches the adapter, then stops it)."""
SILO_WAIT_SECONDS = 5.0


def write_jsonl(records: LabelledTexts, path: Path) -> Path:
    """Records as JSON lines with the label's name (silos map names onto the run's label order)."""
    with path.open("w", encoding="utf-8") as stream:
        for example in records.examples:
            row: dict[str, str] = {
                TEXT_COLUMN: example.text,
                LABEL_COLUMN: records.label_names[example.label],
            }
            if example.text_pair is not None:
                row[PAIR_COLUMN] = example.text_pair
            stream.write(json.dumps(row) + "\n")
    return path


def _toml_value(value: TomlValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(json.dumps(item) for item in value) + "]"
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def toml_text(tables: Mapping[str, Mapping[str, TomlValue]]) -> str:
    """A TOML document: the "" table's keys first, then one [table] per other entry (dotted names allowed)."""
    lines = [f"{key} = {_toml_value(value)}" for key, value in tables.get("", {}).items()]
    for name, values in tables.items():
        if name:
            lines.append(f"\n[{name}]")
            lines.extend(f"{key} = {_toml_value(value)}" for key, value in values.items())
    return "\n".join(lines) + "\n"


def _columns(has_pairs: bool) -> dict[str, TomlValue]:
    columns: dict[str, TomlValue] = {"text_column": TEXT_COLUMN, "label_column": LABEL_COLUMN}
    if has_pairs:
        columns["text_pair_column"] = PAIR_COLUMN
    return columns


def coordinator_toml(
    settings: SimulationSettings,
    model_path: str,
    label_names: tuple[str, ...],
    eval_path: Path,
    results_path: Path,
    port_file: Path,
    has_pairs: bool,
    tls: dict[str, str],
) -> str:
    """The coordinator's config: the simulation's settings, loopback listeners on free ports with mutual
    TLS (`tls`: the [tls] table), every silo required in every round (so the run matches the in-process
    one)."""
    privacy, training, federation = settings.privacy, settings.training, settings.federation
    privacy_table: dict[str, TomlValue] = {
        "clip_norm": privacy.clip_norm,
        "delta": privacy.delta,
        "accountant": privacy.accountant.value,
        "clipping": privacy.clipping.value,
        "secure_noise": privacy.secure_noise,
    }
    if privacy.head_clip_norm is not None:
        privacy_table["head_clip_norm"] = privacy.head_clip_norm
    if privacy.noise_multiplier is not None:
        privacy_table["noise_multiplier"] = privacy.noise_multiplier
    if privacy.target_epsilon is not None:
        privacy_table["target_epsilon"] = privacy.target_epsilon
    training_table: dict[str, TomlValue] = {
        "local_steps": training.local_steps,
        "batch_size": training.batch_size,
        "lr": training.lr,
        "optimizer": training.optimizer.value,
    }
    if training.head_lr is not None:
        training_table["head_lr"] = training.head_lr
    score = federation.score
    return toml_text(
        {
            "": {"model_path": model_path, "labels": list(label_names)},
            "server": {
                "listen": "127.0.0.1:0",
                "port_file": str(port_file),
                "linger_seconds": LINGER_SECONDS,
            },
            "health": {"listen": "127.0.0.1:0"},
            "federation": {
                "policy": federation.policy,
                "rounds": federation.rounds,
                "seed": federation.seed,
                "min_silos": settings.partition.silos,
                "registration_timeout_seconds": PROCESS_PATIENCE_SECONDS,
                "round_deadline_seconds": PROCESS_PATIENCE_SECONDS,
                "max_round_attempts": 1,
                "combiner": federation.combiner.value,
                "trim_fraction": federation.trim_fraction,
                "weighting": federation.weighting.value,
            },
            "federation.score": {
                "estimator": score.estimator,
                "ema": score.ema,
                "z": score.z,
                "curvature": score.curvature,
                "prior_gradient_scale": score.prior_gradient_scale,
            },
            "lora": {
                "rank": settings.lora.rank,
                "alpha": settings.lora.alpha,
                "target_modules": list(settings.lora.target_modules),
                "dropout": settings.lora.dropout,
                "head_pooling": settings.lora.head_pooling.value,
            },
            "privacy": privacy_table,
            "training": training_table,
            "evaluation": {
                "data_path": str(eval_path),
                **_columns(has_pairs),
                "max_length": training.max_length,
                "device": training.device,
                "results_path": str(results_path),
            },
            "tls": tls,
        }
    )


def silo_toml(
    settings: SimulationSettings,
    model_path: str,
    silo_id: str,
    shard: Path,
    coordinator_port: int,
    has_pairs: bool,
    tls: dict[str, str],
) -> str:
    """One silo's config: its shard, the simulation's compute settings, the coordinator on loopback over
    mutual TLS (`tls`: the [tls] table with the silo's own certificate)."""
    training = settings.training
    return toml_text(
        {
            "": {"model_path": model_path},
            "silo": {"name": silo_id},
            "coordinator": {"address": f"127.0.0.1:{coordinator_port}"},
            "data": {"train_path": str(shard), **_columns(has_pairs)},
            "training": {
                "device": training.device,
                "physical_batch_size": training.physical_batch_size,
                "max_length": training.max_length,
            },
            "health": {"listen": "127.0.0.1:0"},
            "connection": {
                "give_up_after_seconds": PROCESS_PATIENCE_SECONDS,
                "wait_seconds": SILO_WAIT_SECONDS,
            },
            "tls": tls,
        }
    )
