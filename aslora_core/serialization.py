"""Adapter states and silo updates as safetensors bytes (no pickle anywhere on the wire or on disk)."""

from __future__ import annotations

import json

import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from aslora_core.factors import (
    AdapterState,
    Factor,
    FactorStatistics,
    LayerFactors,
    SiloStatistics,
    SiloUpdate,
)

FORMAT_KEY = "aslora_format"
STATE_FORMAT = "adapter-state/1"
UPDATE_FORMAT = "silo-update/1"
_SEP = "/"


class SerializationError(ValueError):
    """Bytes that are not a well-formed adapter state or silo update."""


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
    return bytes(save_tensors(tensors, metadata=metadata))


def state_from_bytes(payload: bytes) -> AdapterState:
    """Inverse of `state_to_bytes`."""
    tensors, metadata = _load(payload, STATE_FORMAT)
    factors: dict[str, dict[Factor, torch.Tensor]] = {}
    head: dict[str, torch.Tensor] = {}
    for key, tensor in tensors.items():
        kind, _, rest = key.partition(_SEP)
        if kind == "factor":
            layer, _, which = rest.rpartition(_SEP)
            factors.setdefault(layer, {})[Factor(which)] = tensor
        elif kind == "head":
            head[rest] = tensor
        else:
            raise SerializationError(f"unexpected tensor {key!r} in adapter state")
    layers = {}
    for layer, pair in factors.items():
        if set(pair) != set(Factor):
            raise SerializationError(f"layer {layer!r} lacks a factor")
        layers[layer] = LayerFactors(a=pair[Factor.A], b=pair[Factor.B])
    return AdapterState(layers=dict(sorted(layers.items())), head=head, scaling=float(metadata["scaling"]))


def update_to_bytes(update: SiloUpdate) -> bytes:
    """Serialize a silo's update: its trained factors, head and score statistics (as float64 scalars)."""
    tensors: dict[str, torch.Tensor] = {}
    for layer, trained in update.factors.items():
        for which, tensor in trained.items():
            tensors[_factor_key(layer, which)] = tensor.contiguous()
    for name, tensor in update.head.items():
        tensors[f"head{_SEP}{name}"] = tensor.contiguous()
    metadata = {FORMAT_KEY: UPDATE_FORMAT, "silo_id": update.silo_id, "weight": repr(update.weight)}
    stats = update.statistics
    if stats is not None:
        metadata["steps"] = str(stats.steps)
        metadata["noise_variance"] = repr(stats.noise_variance)
        for layer, per_factor in stats.layers.items():
            for which, values in per_factor.items():
                tensors[f"stats{_SEP}{layer}{_SEP}{which.value}"] = torch.tensor(
                    [values.grad_sq, values.proj_sq], dtype=torch.float64
                )
    return bytes(save_tensors(tensors, metadata=metadata))


def update_from_bytes(payload: bytes) -> SiloUpdate:
    """Inverse of `update_to_bytes`."""
    tensors, metadata = _load(payload, UPDATE_FORMAT)
    factors: dict[str, dict[Factor, torch.Tensor]] = {}
    head: dict[str, torch.Tensor] = {}
    stats: dict[str, dict[Factor, FactorStatistics]] = {}
    for key, tensor in tensors.items():
        kind, _, rest = key.partition(_SEP)
        if kind == "head":
            head[rest] = tensor
            continue
        layer, _, which_name = rest.rpartition(_SEP)
        which = Factor(which_name)
        if kind == "factor":
            factors.setdefault(layer, {})[which] = tensor
        elif kind == "stats":
            grad_sq, proj_sq = tensor.tolist()
            stats.setdefault(layer, {})[which] = FactorStatistics(grad_sq=grad_sq, proj_sq=proj_sq)
        else:
            raise SerializationError(f"unexpected tensor {key!r} in silo update")
    statistics = None
    if "steps" in metadata:
        statistics = SiloStatistics(
            layers=stats, steps=int(metadata["steps"]), noise_variance=float(metadata["noise_variance"])
        )
    return SiloUpdate(
        silo_id=metadata["silo_id"],
        weight=float(metadata["weight"]),
        factors=dict(sorted(factors.items())),
        head=head,
        statistics=statistics,
    )


def statistics_bytes(update: SiloUpdate) -> int:
    """How many payload bytes the score statistics take in a serialized update."""
    stats = update.statistics
    if stats is None:
        return 0
    scalars = sum(len(per_factor) for per_factor in stats.layers.values())
    return scalars * 2 * torch.finfo(torch.float64).bits // 8


def _load(payload: bytes, expected_format: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    try:
        tensors = load_tensors(payload)
        header_len = int.from_bytes(payload[:8], "little")
        header = json.loads(payload[8 : 8 + header_len])
    except Exception as error:  # safetensors raises several unrelated types on garbage
        raise SerializationError(f"not a safetensors payload: {type(error).__name__}") from error
    metadata: dict[str, str] = header.get("__metadata__", {})
    if metadata.get(FORMAT_KEY) != expected_format:
        raise SerializationError(f"expected format {expected_format!r}, got {metadata.get(FORMAT_KEY)!r}")
    return tensors, metadata
