"""Checks of an uploaded update against its task, before it touches any state (DESIGN 5)."""

from __future__ import annotations

import math

import torch

from aslora_coordinator.errors import FederationError
from aslora_core.factor_choice import FactorChoice
from aslora_core.factors import AdapterState, SiloUpdate
from aslora_rpc.error_codes import ErrorCode


def validate_update(
    update: SiloUpdate,
    silo_id: str,
    weight: float,
    selection: dict[str, FactorChoice],
    global_state: AdapterState,
    *,
    global_norm: float,
    max_norm_ratio: float,
) -> float:
    """Raise INVALID_UPDATE unless the update is the silo's, weighted by its dataset size, and carries
    exactly the selected factors and the head, shaped and typed as the global adapter, all finite;
    UPDATE_TOO_LARGE when it moves the adapter by more than `max_norm_ratio` times the adapter's norm
    (`global_norm`, computed once per round).
    Returns that ratio."""
    if update.silo_id != silo_id:
        _invalid(f"update names silo {update.silo_id!r}")
    if update.weight != weight:
        _invalid(f"weight {update.weight} is not the registered dataset size {weight}")
    if set(update.factors) != set(selection):
        _invalid("layers differ from the task's")
    for layer, trained in update.factors.items():
        if set(trained) != set(selection[layer].factors):
            _invalid(f"layer {layer!r} does not carry exactly the selected factor(s)")
        for which, tensor in trained.items():
            _check(f"{layer}.{which.value}", tensor, global_state.layers[layer].factor(which))
    if set(update.head) != set(global_state.head):
        _invalid("head tensors differ from the global adapter's")
    for name, tensor in update.head.items():
        _check(f"head {name}", tensor, global_state.head[name])
    statistics = update.statistics
    if statistics is not None:
        entries = [(layer, which, s) for layer, per in statistics.layers.items() for which, s in per.items()]
        values = [v for _, _, s in entries for v in (s.grad_sq, s.proj_sq)]
        values += [
            v
            for _, _, s in entries
            if s.curvature is not None
            for v in (s.curvature.secant, s.curvature.step_sq, s.curvature.step_change)
        ]
        if not all(math.isfinite(v) for v in values):
            _invalid("score statistics are not finite")
        if not set(statistics.layers) <= set(selection):
            _invalid("score statistics name layers outside the task")
        alone = {(layer, c.factors[0]) for layer, c in selection.items() if len(c.factors) == 1}
        if any(s.curvature is not None and (layer, which) not in alone for layer, which, s in entries):
            _invalid("curvature statistics name a factor its layer did not train alone")
    ratio = update_norm_ratio(update, global_state, global_norm)
    if not ratio <= max_norm_ratio:
        raise FederationError(
            ErrorCode.UPDATE_TOO_LARGE,
            f"||update - global|| is {ratio:.3g} x ||global||, the bound {max_norm_ratio:g}",
        )
    return ratio


def update_norm_ratio(update: SiloUpdate, global_state: AdapterState, global_norm: float) -> float:
    """||update - global|| over the tensors the update carries, divided by `global_norm` (the norm of the
    whole global adapter, `adapter_norm`; never zero, since A starts random), in float64."""
    change = [
        (tensor.double() - global_state.layers[layer].factor(which).double()).square().sum()
        for layer, trained in update.factors.items()
        for which, tensor in trained.items()
    ]
    change += [(t.double() - global_state.head[k].double()).square().sum() for k, t in update.head.items()]
    return math.sqrt(float(sum(change))) / global_norm


def adapter_norm(state: AdapterState) -> float:
    """The Frobenius norm of every factor and head tensor of an adapter together, in float64."""
    squares = [t.double().square().sum() for pair in state.layers.values() for t in (pair.a, pair.b)]
    squares += [t.double().square().sum() for t in state.head.values()]
    return math.sqrt(float(sum(squares)))


def _check(what: str, tensor: torch.Tensor, reference: torch.Tensor) -> None:
    if tensor.shape != reference.shape or tensor.dtype != reference.dtype:
        _invalid(
            f"{what}: {tuple(tensor.shape)} {tensor.dtype}, "
            f"expected {tuple(reference.shape)} {reference.dtype}"
        )
    if not bool(torch.isfinite(tensor).all()):
        _invalid(f"{what}: non-finite values")


def _invalid(detail: str) -> None:
    raise FederationError(ErrorCode.INVALID_UPDATE, detail)
