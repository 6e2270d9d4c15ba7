"""A state store in a folder: one safetensors file holding the global adapter's tensors, with everything
else (run id, round, policy state, silo registry and ledger, results) as JSON in its metadata.

One file means one atomic rename: a reader sees the previous checkpoint or the new one, never a mix.
No pickle anywhere: tensors are safetensors, the rest is JSON.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load as load_tensors

from aslora_coordinator.state.base import CheckpointError, CoordinatorSnapshot, SiloSnapshot, StateStore
from aslora_core.atomic_files import write_atomically
from aslora_core.factors import AdapterState
from aslora_core.serialization import SerializationError, save_canonical, state_from_tensors, state_to_bytes
from aslora_rpc.messages import RunState

CHECKPOINT_FILE = "checkpoint.safetensors"
SNAPSHOT_KEY = "aslora_checkpoint"
"""The safetensors metadata key that holds the snapshot's JSON."""
STATE_FORMAT_VERSION = 1
"""Bumped whenever the snapshot's JSON changes in a way an older reader would misread."""
READ_BACKEND = "pread"
HEADER_LENGTH_BYTES = 8
"""A safetensors file starts with its JSON header's length as a little-endian u64."""


class FileStateStore(StateStore):
    """Keeps the latest snapshot in `folder/checkpoint.safetensors`, replaced atomically on every save."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / CHECKPOINT_FILE

    def save(self, snapshot: CoordinatorSnapshot) -> None:
        """Write the snapshot (temporary file, fsync, rename, fsync the folder)."""
        adapter = state_to_bytes(snapshot.global_state)
        tensors, metadata = _tensors_and_metadata(adapter)
        metadata[SNAPSHOT_KEY] = json.dumps(_to_json(snapshot), sort_keys=True)
        write_atomically(self.path, save_canonical(tensors, metadata))

    def load(self) -> CoordinatorSnapshot | None:
        """The stored snapshot, None when the folder has none; CheckpointError when it cannot be used."""
        if not self.path.exists():
            return None
        try:
            with safe_open(str(self.path), framework="pt", backend=READ_BACKEND) as handle:
                metadata: dict[str, str] = handle.metadata() or {}
                tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
            document = json.loads(metadata.pop(SNAPSHOT_KEY))
            global_state = state_from_tensors(tensors, metadata)
        except (OSError, SafetensorError, SerializationError, KeyError, ValueError) as error:
            raise CheckpointError(f"{self.path} is not a readable checkpoint: {error}") from error
        return _from_json(document, global_state, self.path)


def _tensors_and_metadata(payload: bytes) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and metadata of an in-memory safetensors payload."""
    header_size = int.from_bytes(payload[:HEADER_LENGTH_BYTES], "little")
    header = json.loads(payload[HEADER_LENGTH_BYTES : HEADER_LENGTH_BYTES + header_size])
    return load_tensors(payload), dict(header.get("__metadata__", {}))


def _to_json(snapshot: CoordinatorSnapshot) -> dict[str, Any]:
    return {
        "format_version": STATE_FORMAT_VERSION,
        "run_id": snapshot.run_id,
        "config_fingerprint": snapshot.config_fingerprint,
        "state": snapshot.state.value,
        "reason": snapshot.reason,
        "rounds_completed": snapshot.rounds_completed,
        "policy_state": snapshot.policy_state,
        "silos": [
            {
                "silo_id": s.silo_id,
                "dataset_size": s.dataset_size,
                "sample_rate": s.sample_rate,
                "noise_multiplier": s.noise_multiplier,
                "rounds_participated": s.rounds_participated,
                "epsilon_reported": s.epsilon_reported,
                "declined_reason": s.declined_reason,
                "ledger": s.ledger,
                "evicted": s.evicted,
            }
            for s in snapshot.silos
        ],
        "results": snapshot.results,
        "failed_attempts": snapshot.failed_attempts,
    }


def _from_json(document: Mapping[str, Any], global_state: AdapterState, path: Path) -> CoordinatorSnapshot:
    version = document.get("format_version")
    if version != STATE_FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has state-format version {version!r}; this coordinator reads version "
            f"{STATE_FORMAT_VERSION} only (use the coordinator release that wrote it, or a new --state-dir)"
        )
    try:
        return CoordinatorSnapshot(
            run_id=str(document["run_id"]),
            config_fingerprint=str(document["config_fingerprint"]),
            state=RunState(document["state"]),
            reason=str(document["reason"]),
            rounds_completed=int(document["rounds_completed"]),
            global_state=global_state,
            policy_state=dict(document["policy_state"]),
            silos=tuple(
                SiloSnapshot(
                    silo_id=str(s["silo_id"]),
                    dataset_size=int(s["dataset_size"]),
                    sample_rate=float(s["sample_rate"]),
                    noise_multiplier=float(s["noise_multiplier"]),
                    rounds_participated=int(s["rounds_participated"]),
                    epsilon_reported=float(s["epsilon_reported"]),
                    declined_reason=s["declined_reason"],
                    ledger=dict(s["ledger"]),
                    # Checkpoints written before evictions existed have no such key: nobody was evicted.
                    evicted=bool(s.get("evicted", False)),
                )
                for s in document["silos"]
            ),
            results=dict(document["results"]),
            failed_attempts=int(document["failed_attempts"]),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: checkpoint field missing or malformed ({error})") from error
