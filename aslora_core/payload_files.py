"""Adapter states and silo updates read from safetensors files, holding one copy of the tensors.

`aslora_core.serialization` decodes from bytes, which keeps the payload and the tensors in memory at the
same time (two copies). A receiver that spooled a payload to disk reads it here instead: the tensors are
read straight from the file, so a 1 GiB adapter costs 1 GiB. The layout and its decoding are those of
`aslora_core.serialization`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from aslora_core.factors import AdapterState, SiloUpdate, StatisticsNoise
from aslora_core.serialization import (
    FORMAT_KEY,
    STATE_FORMAT,
    UPDATE_FORMAT,
    SerializationError,
    state_from_tensors,
    update_from_tensors,
)

READ_BACKEND = "pread"
"""Tensors are copied out of the file (not memory-mapped), so the file may be deleted right after."""


def state_from_file(path: str | Path) -> AdapterState:
    """The adapter state in a file written from `serialization.state_to_bytes`."""
    return state_from_tensors(*_read(path, STATE_FORMAT))


def update_from_file(path: str | Path, noise: StatisticsNoise) -> SiloUpdate:
    """The silo update in a file written from `serialization.update_to_bytes` (its statistics carry the
    receiver's `noise`)."""
    return update_from_tensors(*_read(path, UPDATE_FORMAT), noise)


def _read(path: str | Path, expected_format: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    try:
        with safe_open(str(path), framework="pt", backend=READ_BACKEND) as handle:
            metadata: dict[str, str] = handle.metadata() or {}
            if metadata.get(FORMAT_KEY) != expected_format:
                raise SerializationError(
                    f"expected format {expected_format!r}, got {metadata.get(FORMAT_KEY)!r}"
                )
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    except SafetensorError as error:
        raise SerializationError(f"not a safetensors payload: {error}") from error
    return tensors, metadata
