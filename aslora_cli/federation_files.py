"""The files `aslora simulate --transport grpc` hands its processes: data shards and TOML configs."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from aslora_coordinator.config import RoundSettings
from aslora_core.config import RecordFields, SimulationSettings
from aslora_core.data import DataError, LabelledTexts
from aslora_core.data.images import LabelledImages
from aslora_core.data.instructions import InstructionRecords
from aslora_core.data.records import Records
from aslora_core.privacy import PrivacyAccountant
from aslora_core.privacy.planning import expected_sample_rate
from aslora_rpc.settings_file import TomlValue, settings_table

TEXT_COLUMN = "text"
PAIR_COLUMN = "text_pair"
LABEL_COLUMN = "label"
PROMPT_FIELD = "prompt"
RESPONSE_FIELD = "response"
PROCESS_PATIENCE_SECONDS = 600.0
"""How long any process of a simulation waits for another before giving up (all stop by themselves)."""
LINGER_SECONDS = 120.0
"""The coordinator serves this long after the run (the launcher fetches the adapter, then stops it)."""
SILO_WAIT_SECONDS = 5.0
NON_PRIVATE_BUDGET = 1.0
"""A silo of a non-private simulation allows sigma-0 tasks, which its budget does not bound; the key is
required all the same."""


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


def write_records(records: Records, folder: Path, stem: str) -> tuple[Path, RecordFields]:
    """Records as the file a silo or the coordinator reads (JSON lines, or `.npz` for images), and where
    that file keeps each field."""
    if isinstance(records, LabelledTexts):
        pair = PAIR_COLUMN if records.has_pairs else None
        fields = RecordFields(text_column=TEXT_COLUMN, text_pair_column=pair, label_column=LABEL_COLUMN)
        return write_jsonl(records, folder / f"{stem}.jsonl"), fields
    if isinstance(records, InstructionRecords):
        path = folder / f"{stem}.jsonl"
        with path.open("w", encoding="utf-8") as stream:
            for prompt, response in zip(records.prompts, records.responses, strict=True):
                stream.write(json.dumps({PROMPT_FIELD: prompt, RESPONSE_FIELD: response}) + "\n")
        return path, RecordFields(prompt_field=PROMPT_FIELD, response_field=RESPONSE_FIELD)
    if isinstance(records, LabelledImages):
        if len({image.shape for image in records.images}) != 1:
            raise DataError("images of different sizes cannot be written as one .npz shard")
        path = folder / f"{stem}.npz"
        np.savez(path, images=np.stack(records.images), labels=records.labels)  # NPZ_IMAGES, NPZ_LABELS
        return path, RecordFields()
    raise DataError(f"no file format for {type(records).__name__}")


def coordinator_toml(
    settings: SimulationSettings,
    model_path: str,
    label_names: tuple[str, ...],
    eval_path: Path,
    results_path: Path,
    port_file: Path,
    fields: RecordFields,
    tls: dict[str, str],
) -> str:
    """The coordinator's config: the simulation's run settings as they are, loopback listeners on free
    ports with mutual TLS (`tls`: the [tls] table), every silo required in every round (so the run matches
    the in-process one)."""
    federation = settings.federation
    staffing = RoundSettings(
        min_silos=settings.partition.silos,
        registration_timeout_seconds=PROCESS_PATIENCE_SECONDS,
        round_deadline_seconds=PROCESS_PATIENCE_SECONDS,
        max_round_attempts=1,
    )
    return toml_text(
        {
            "": {"model_path": model_path, "task": settings.task.value, "labels": list(label_names)},
            "server": {
                "listen": "127.0.0.1:0",
                "port_file": str(port_file),
                "linger_seconds": LINGER_SECONDS,
            },
            "health": {"listen": "127.0.0.1:0"},
            "federation": {**settings_table(federation), **settings_table(staffing)},
            "federation.score": settings_table(federation.score),
            "lora": settings_table(settings.lora),
            "privacy": settings_table(settings.privacy),
            "training": settings_table(settings.training),
            "evaluation": {
                "data_path": str(eval_path),
                **settings_table(fields),
                "max_length": settings.compute.max_length,
                "device": settings.compute.device,
                "results_path": str(results_path),
            },
            "tls": tls,
        }
    )


def silo_privacy(settings: SimulationSettings, shard_size: int) -> dict[str, TomlValue]:
    """A simulated silo's own [privacy] table: a budget that the run's schedule exactly fits (the target
    epsilon, or what the fixed sigma spends over every round at this silo's sampling rate), the run's delta
    and accountant, and test mode or non-private runs allowed only when the simulation is so configured."""
    privacy, training = settings.privacy, settings.training
    budget = privacy.target_epsilon
    if not privacy.private:
        budget = NON_PRIVATE_BUDGET
    elif privacy.noise_multiplier is not None:
        schedule = PrivacyAccountant(privacy.accountant)
        rate = expected_sample_rate(training.batch_size, shard_size)
        schedule.record(privacy.noise_multiplier, rate, settings.federation.rounds * training.local_steps)
        budget = schedule.epsilon(privacy.delta)
    if budget is None:
        raise ValueError("privacy settings give neither a noise multiplier nor a target epsilon")
    return {
        "max_epsilon": budget,
        "max_delta": privacy.delta,
        "accountant": privacy.accountant.value,
        "allow_non_private": not privacy.private,
        "test_mode": privacy.test_mode,
    }


def silo_toml(
    settings: SimulationSettings,
    model_path: str,
    silo_id: str,
    shard: Path,
    shard_size: int,
    coordinator_port: int,
    fields: RecordFields,
    tls: dict[str, str],
    peers: Mapping[str, str] | None = None,
) -> str:
    """One silo's config: its shard (of `shard_size` records, its fields where `fields` says), its own
    privacy settings, the simulation's compute settings, the coordinator on loopback over mutual TLS
    (`tls`: the [tls] table with the silo's own certificate), and under secure aggregation the `peers` it
    pins (name -> certificate fingerprint)."""
    pinned: dict[str, dict[str, TomlValue]] = {"secure_aggregation.peers": dict(peers)} if peers else {}
    return toml_text(
        {
            "": {"model_path": model_path, "task": settings.task.value},
            "silo": {"name": silo_id},
            "coordinator": {"address": f"127.0.0.1:{coordinator_port}"},
            "data": {"train_path": str(shard), **settings_table(fields)},
            "training": settings_table(settings.compute),
            "privacy": silo_privacy(settings, shard_size),
            "health": {"listen": "127.0.0.1:0"},
            "connection": {
                "give_up_after_seconds": PROCESS_PATIENCE_SECONDS,
                "wait_seconds": SILO_WAIT_SECONDS,
            },
            "tls": tls,
            **pinned,
        }
    )
