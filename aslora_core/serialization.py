"""Adapter states and silo updates as safetensors bytes (no pickle anywhere on the wire or on disk)."""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from typing import Any

import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from aslora_core.factor_choice import Factor
from aslora_core.factors import (
    AdapterState,
    CurvatureStatistics,
    FactorStatistics,
    LayerFactors,
    SiloStatistics,
    SiloUpdate,
    StatisticsNoise,
)

FORMAT_KEY = "aslora_format"
STATE_FORMAT = "adapter-state/1"
UPDATE_FORMAT = "silo-update/3"
"""Version 2: the statistics travel without their step count and noise variance (the receiver computes
those from the published settings). Version 3: a trained factor's statistics may carry its secant sums."""
STATISTICS_KEY = "statistics"
RELEASED = "released"
_SEP = "/"
STATISTICS_PER_FACTOR = 2
"""Scalars released per layer and factor: grad_sq and proj_sq."""
CURVATURE_PER_FACTOR = 3
"""Scalars released per trained layer and factor besides, after those two: secant, step_sq, step_change."""
_STATISTICS_SHAPES = ((STATISTICS_PER_FACTOR,), (STATISTICS_PER_FACTOR + CURVATURE_PER_FACTOR,))
_HEADER_LENGTH = struct.Struct("<Q")
"""A safetensors payload opens with its JSON header's length in bytes, then the header."""
_METADATA = "__metadata__"


class SerializationError(ValueError):
    """Bytes that are not a well-formed adapter state or silo update."""


def save_canonical(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> bytes:
    """safetensors bytes that depend only on the tensors and metadata: equal states give equal SHA-256s."""
    payload = bytearray(save_tensors(dict(tensors), metadata=dict(metadata)))
    # safetensors writes its metadata map in an order that changes from process to process, so a restarted
    # coordinator would announce another checksum for the very adapter a silo was downloading.
    header, length = _header(payload)
    if _METADATA not in header:
        return bytes(payload)
    header[_METADATA] = dict(sorted(header[_METADATA].items()))
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    if len(text) > length:
        raise SerializationError(f"the sorted header takes {len(text)} bytes, more than the {length} written")
    # The same keys and values in another order, padded with spaces as safetensors pads its header.
    payload[_HEADER_LENGTH.size : _HEADER_LENGTH.size + length] = text.ljust(length)
    return bytes(payload)


def _header(payload: bytes | bytearray) -> tuple[dict[str, Any], int]:
    """A safetensors payload's JSON header and its length in bytes."""
    (length,) = _HEADER_LENGTH.unpack_from(payload)
    return json.loads(payload[_HEADER_LENGTH.size : _HEADER_LENGTH.size + length]), length


def _factor_key(layer: str, which: Factor) -> str:
    return f"factor{_SEP}{layer}{_SEP}{which.value}"


def state_to_bytes(state: AdapterState) -> bytes:
    """Serialize a whole adapter (both factors of every layer, and the head)."""
    tensors: dict[str, torch.Tensor] = {}
    for layer, factors in state.layers.items():
        for which in Factor:
            tensors[_factor_key(layer, which)] = factors.factor(which).contiguous()
    for name, tensor in state.head.items():
        tensors[f"head{_SEP}{name}"] = tensor.contiguous()
    metadata = {FORMAT_KEY: STATE_FORMAT, "scaling": repr(state.scaling)}
    return save_canonical(tensors, metadata)


def state_from_bytes(payload: bytes) -> AdapterState:
    """Inverse of `state_to_bytes`."""
    return state_from_tensors(*_load(payload, STATE_FORMAT))


def state_from_tensors(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> AdapterState:
    """An adapter state from the named tensors and metadata of its safetensors payload."""
    factors: dict[str, dict[Factor, torch.Tensor]] = {}
    head: dict[str, torch.Tensor] = {}
    for key, tensor in tensors.items():
        kind, _, rest = key.partition(_SEP)
        if kind == "factor":
            layer, _, which = rest.rpartition(_SEP)
            factors.setdefault(layer, {})[_factor(which, key)] = tensor
        elif kind == "head":
            head[rest] = tensor
        else:
            raise SerializationError(f"unexpected tensor {key!r} in adapter state")
    layers = {}
    for layer, pair in sorted(factors.items()):
        if set(pair) != set(Factor):
            raise SerializationError(f"layer {layer!r} lacks a factor")
        layers[layer] = LayerFactors(a=pair[Factor.A], b=pair[Factor.B])
    return AdapterState(layers=layers, head=head, scaling=_float(metadata, "scaling"))


def update_to_bytes(update: SiloUpdate) -> bytes:
    """Serialize a silo's update: its trained factors, head and score statistics (as float64 scalars; how
    they were noised is not sent, the receiver computes it from what it published)."""
    tensors: dict[str, torch.Tensor] = {}
    for layer, trained in update.factors.items():
        for which, tensor in trained.items():
            tensors[_factor_key(layer, which)] = tensor.contiguous()
    for name, tensor in update.head.items():
        tensors[f"head{_SEP}{name}"] = tensor.contiguous()
    metadata = {FORMAT_KEY: UPDATE_FORMAT, "silo_id": update.silo_id, "weight": repr(update.weight)}
    stats = update.statistics
    if stats is not None:
        metadata[STATISTICS_KEY] = RELEASED
        for layer, per_factor in stats.layers.items():
            for which, values in per_factor.items():
                scalars = [values.grad_sq, values.proj_sq]
                secants = values.curvature
                if secants is not None:
                    # in the same tensor: a tensor of its own would cost a header entry per layer
                    scalars += [secants.secant, secants.step_sq, secants.step_change]
                tensors[f"stats{_SEP}{layer}{_SEP}{which.value}"] = torch.tensor(scalars, dtype=torch.float64)
    return save_canonical(tensors, metadata)


def update_from_bytes(payload: bytes, noise: StatisticsNoise) -> SiloUpdate:
    """Inverse of `update_to_bytes`; its statistics, if any, carry the receiver's `noise`."""
    return update_from_tensors(*_load(payload, UPDATE_FORMAT), noise)


def update_from_tensors(
    tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str], noise: StatisticsNoise
) -> SiloUpdate:
    """A silo update from the named tensors and metadata of its safetensors payload; its statistics carry
    the `noise` the receiver computed from its published settings."""
    factors: dict[str, dict[Factor, torch.Tensor]] = {}
    head: dict[str, torch.Tensor] = {}
    stats: dict[str, dict[Factor, FactorStatistics]] = {}
    for key, tensor in tensors.items():
        kind, _, rest = key.partition(_SEP)
        if kind == "head":
            head[rest] = tensor
            continue
        layer, _, which_name = rest.rpartition(_SEP)
        which = _factor(which_name, key)
        if kind == "factor":
            factors.setdefault(layer, {})[which] = tensor
        elif kind == "stats" and tensor.shape in _STATISTICS_SHAPES:
            grad_sq, proj_sq, *secants = tensor.tolist()
            curvature = CurvatureStatistics(*secants) if secants else None
            stats.setdefault(layer, {})[which] = FactorStatistics(grad_sq, proj_sq, curvature=curvature)
        else:
            raise SerializationError(f"unexpected tensor {key!r} in silo update")
    statistics = None
    if metadata.get(STATISTICS_KEY) == RELEASED:
        statistics = SiloStatistics(layers=stats, steps=noise.steps, noise_variance=noise.noise_variance)
    elif stats:
        raise SerializationError("score statistics without the statistics marker")
    if "silo_id" not in metadata:
        raise SerializationError("silo update without a silo_id")
    return SiloUpdate(
        silo_id=metadata["silo_id"],
        weight=_float(metadata, "weight"),
        factors=dict(sorted(factors.items())),
        head=head,
        statistics=statistics,
    )


def statistics_bytes(update: SiloUpdate) -> int:
    """How many payload bytes the score statistics take in a serialized update."""
    stats = update.statistics
    if stats is None:
        return 0
    entries = [entry for per_factor in stats.layers.values() for entry in per_factor.values()]
    scalars = len(entries) * STATISTICS_PER_FACTOR
    scalars += sum(CURVATURE_PER_FACTOR for entry in entries if entry.curvature is not None)
    return scalars * torch.finfo(torch.float64).bits // 8


def _load(payload: bytes, expected_format: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    try:
        tensors = load_tensors(payload)
        header, _ = _header(payload)
    except Exception as error:  # safetensors raises several unrelated types on garbage
        raise SerializationError(f"not a safetensors payload: {type(error).__name__}") from error
    metadata: dict[str, str] = header.get(_METADATA, {})
    if metadata.get(FORMAT_KEY) != expected_format:
        raise SerializationError(f"expected format {expected_format!r}, got {metadata.get(FORMAT_KEY)!r}")
    return tensors, metadata


def _factor(name: str, key: str) -> Factor:
    try:
        return Factor(name)
    except ValueError:
        raise SerializationError(f"tensor {key!r} names no factor") from None


def _float(metadata: Mapping[str, str], key: str) -> float:
    try:
        return float(metadata[key])
    except (KeyError, ValueError):
        raise SerializationError(f"metadata {key!r} missing or not a number") from None
