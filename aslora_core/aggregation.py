"""Server-side aggregation of silo updates: exact one-factor mean, FedIT separate means, QR-core SVD."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

from aslora_core.aggregation_rule import AggregationRule
from aslora_core.config import Combiner
from aslora_core.factor_choice import Factor, FactorChoice, Selection
from aslora_core.factors import AdapterState, LayerFactors, SiloUpdate


class AggregationError(ValueError):
    """The updates do not match the global adapter, the selection or the rule."""


@dataclass(frozen=True)
class AggregationResult:
    """The new global adapter and, for FedIT, the relative product error of each two-factor layer."""

    state: AdapterState
    product_error: dict[str, float] = field(default_factory=dict)


def aggregate(
    global_state: AdapterState,
    updates: Sequence[SiloUpdate],
    selection: Selection,
    rule: AggregationRule,
    *,
    combiner: Combiner = Combiner.MEAN,
    trim_fraction: float = 0.0,
) -> AggregationResult:
    """Combine the silos' updates of one round into the next global adapter.

    A layer that selected one factor gets the weighted mean of that factor under every rule (exact by
    construction); the other factor is the very tensor of `global_state`. Layers that trained both factors
    are combined by `rule` (EXACT refuses them). The head is always weighted-averaged. Silos are reduced
    in silo-id order, so the result does not depend on the order of `updates`.

    A robust `combiner` (median, trimmed mean) replaces every weighted mean by its unweighted,
    coordinate-wise counterpart; the product B A is then no longer the mean of the silos' products.
    """
    ordered = _validated(global_state, updates, selection, rule)
    if combiner is not Combiner.MEAN and not rule.linear:
        raise AggregationError(
            f"the {rule.name} rule is not a weighted mean of the silos' tensors; it takes no robust combiner"
        )
    total = math.fsum(u.weight for u in ordered)
    weights = [u.weight / total for u in ordered]
    names = global_state.layer_names
    refactored = [n for n in names if rule is AggregationRule.SVD and selection[n] is FactorChoice.BOTH]
    skipped = set(refactored)
    averaged = [(n, f) for n in names if n not in skipped for f in selection[n].factors]
    head_keys = sorted(global_state.head)

    per_silo = [[u.factors[n][f] for n, f in averaged] + [u.head[k] for k in head_keys] for u in ordered]
    if combiner is Combiner.MEAN:
        means = _weighted_means(per_silo, weights)
    else:
        count = len(ordered)
        trimmed = (count - 1) // 2 if combiner is Combiner.MEDIAN else int(trim_fraction * count)
        means = _trimmed_means(per_silo, trimmed)
    layers = dict(global_state.layers)
    for (name, factor), mean in zip(averaged, means[: len(averaged)], strict=True):
        layers[name] = layers[name].replace(factor, mean)
    layers.update(_svd_refactor(ordered, weights, refactored))
    head = dict(zip(head_keys, means[len(averaged) :], strict=True))

    errors: dict[str, float] = {}
    if rule is AggregationRule.SEPARATE_MEANS:
        both = [n for n in names if selection[n] is FactorChoice.BOTH]
        errors = _separate_means_error(ordered, weights, both, layers)
    return AggregationResult(
        state=AdapterState(layers=layers, head=head, scaling=global_state.scaling), product_error=errors
    )


def _validated(
    global_state: AdapterState, updates: Sequence[SiloUpdate], selection: Selection, rule: AggregationRule
) -> list[SiloUpdate]:
    """The updates sorted by silo id, after checking them against the adapter, selection and rule."""
    if not updates:
        raise AggregationError("no updates to aggregate")
    if set(selection) != set(global_state.layers):
        raise AggregationError("the selection must name exactly the adapter's layers")
    if rule is AggregationRule.EXACT:
        both = sorted(n for n, c in selection.items() if c is FactorChoice.BOTH)
        if both:
            raise AggregationError(f"exact aggregation needs one factor per layer; both selected for {both}")
    ordered = sorted(updates, key=lambda u: u.silo_id)
    for previous, current in itertools.pairwise(ordered):
        if previous.silo_id == current.silo_id:
            raise AggregationError(f"two updates from silo {current.silo_id!r}")
    expected = _expected_tensors(global_state, selection)
    for update in ordered:
        _check_update(global_state, update, selection, expected)
    return ordered


TensorSpec = tuple[torch.Size, torch.dtype, torch.device]
"""What an update's tensor must be: the shape, dtype and device of the adapter's own."""


def _spec(tensor: torch.Tensor) -> TensorSpec:
    return tensor.shape, tensor.dtype, tensor.device


def _expected_tensors(
    global_state: AdapterState, selection: Selection
) -> dict[str, dict[Factor, TensorSpec]]:
    """Layer -> selected factor -> its spec, computed once per aggregation rather than once per silo."""
    return {
        name: {factor: _spec(global_state.layers[name].factor(factor)) for factor in choice.factors}
        for name, choice in selection.items()
    }


def _check_update(
    global_state: AdapterState,
    update: SiloUpdate,
    selection: Selection,
    expected: Mapping[str, Mapping[Factor, TensorSpec]],
) -> None:
    """Raise unless `update` carries exactly the selected factors and the head, shaped as the adapter."""
    who = f"silo {update.silo_id!r}"
    if not (math.isfinite(update.weight) and update.weight > 0):
        raise AggregationError(f"{who}: weight must be positive and finite, got {update.weight}")
    if update.factors.keys() != expected.keys():
        raise AggregationError(f"{who}: layers {sorted(update.factors)} != {global_state.layer_names}")
    for name, factors in update.factors.items():
        wanted = expected[name]
        if factors.keys() != wanted.keys():
            got = sorted(f.value for f in factors)
            raise AggregationError(
                f"{who}: layer {name!r} sent {got}, selection asked for {selection[name].value}"
            )
        for factor, tensor in factors.items():
            if _spec(tensor) != wanted[factor]:
                _check_tensor(
                    f"{who}: layer {name!r} factor {factor.value}",
                    tensor,
                    global_state.layers[name].factor(factor),
                )
    if update.head.keys() != global_state.head.keys():
        raise AggregationError(f"{who}: head {sorted(update.head)} != {sorted(global_state.head)}")
    for key, tensor in update.head.items():
        _check_tensor(f"{who}: head {key!r}", tensor, global_state.head[key])


def _check_tensor(what: str, tensor: torch.Tensor, reference: torch.Tensor) -> None:
    """Raise unless `tensor` has the shape, dtype and device of `reference`."""
    if (
        tensor.shape != reference.shape
        or tensor.dtype != reference.dtype
        or tensor.device != reference.device
    ):
        raise AggregationError(
            f"{what}: got {tuple(tensor.shape)} {tensor.dtype} on {tensor.device}, "
            f"expected {tuple(reference.shape)} {reference.dtype} on {reference.device}"
        )


def _weighted_means(per_silo: Sequence[list[torch.Tensor]], weights: Sequence[float]) -> list[torch.Tensor]:
    """Element-wise sum_i weights[i] * per_silo[i][j] for every j, silos reduced in the given order.

    One fused multi-tensor call per silo covers every layer at once: the mean is bandwidth-bound, so
    this beats both a Python loop per layer and stacking the tensors (which copies every input once more).
    """
    if not per_silo[0]:
        return []
    means = list(torch._foreach_mul(per_silo[0], weights[0]))
    for tensors, weight in zip(per_silo[1:], weights[1:], strict=True):
        torch._foreach_add_(means, tensors, alpha=weight)
    return means


def _trimmed_means(per_silo: Sequence[list[torch.Tensor]], trimmed: int) -> list[torch.Tensor]:
    """Coordinate-wise mean of the silos' values after dropping the `trimmed` lowest and highest.

    With K silos, `trimmed` = (K - 1) // 2 leaves the middle one (K odd) or two (K even): the median.
    """
    count = len(per_silo)
    result = []
    for j in range(len(per_silo[0])):
        ordered = torch.stack([tensors[j] for tensors in per_silo]).sort(dim=0).values
        result.append(ordered[trimmed : count - trimmed].mean(dim=0))
    return result


def _shape_groups(updates: Sequence[SiloUpdate], names: Sequence[str]) -> list[list[str]]:
    """`names` grouped by the shapes and dtype of their factors, so each group can be batched."""
    groups: dict[tuple[object, ...], list[str]] = {}
    for name in names:
        factors = updates[0].factors[name]
        a, b = factors[Factor.A], factors[Factor.B]
        groups.setdefault((tuple(a.shape), tuple(b.shape), a.dtype, b.dtype), []).append(name)
    return list(groups.values())


def _stacked(
    updates: Sequence[SiloUpdate], weights: Sequence[float], names: Sequence[str]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per layer, [p_1 B_1 .. p_K B_K] (m x Kr) and [A_1; ..; A_K] (Kr x n), batched over `names`."""
    b = torch.cat(
        [
            torch.stack([u.factors[n][Factor.B] for n in names]) * p
            for u, p in zip(updates, weights, strict=True)
        ],
        dim=-1,
    )
    a = torch.cat([torch.stack([u.factors[n][Factor.A] for n in names]) for u in updates], dim=-2)
    return b, a


def _svd_refactor(
    updates: Sequence[SiloUpdate], weights: Sequence[float], names: Sequence[str]
) -> dict[str, LayerFactors]:
    """B = U S^1/2, A = S^1/2 V^T from the rank-r truncated SVD of sum_i p_i B_i A_i, per layer.

    With Q_B R_B = [p_i B_i] and Q_A R_A = [A_i]^T, the product is Q_B (R_B R_A^T) Q_A^T, so only the
    small Kr x Kr core is decomposed; no m x n matrix is ever formed.
    """
    result: dict[str, LayerFactors] = {}
    for group in _shape_groups(updates, names):
        b_stack, a_stack = _stacked(updates, weights, group)
        rank = updates[0].factors[group[0]][Factor.B].shape[-1]
        q_b, r_b = torch.linalg.qr(b_stack)
        q_a, r_a = torch.linalg.qr(a_stack.mT)
        u, s, vh = torch.linalg.svd(r_b @ r_a.mT)
        root = s[..., :rank].sqrt()
        new_b = (q_b @ u[..., :rank]) * root.unsqueeze(-2)
        new_a = (root.unsqueeze(-1) * vh[..., :rank, :]) @ q_a.mT
        for i, name in enumerate(group):
            result[name] = LayerFactors(a=new_a[i].contiguous(), b=new_b[i].contiguous())
    return result


def _separate_means_error(
    updates: Sequence[SiloUpdate],
    weights: Sequence[float],
    names: Sequence[str],
    layers: Mapping[str, LayerFactors],
) -> dict[str, float]:
    """||mean(B) mean(A) - sum_i p_i B_i A_i||_F / ||sum_i p_i B_i A_i||_F for each layer in `names`.

    Both norms come from Gram matrices of the stacked factors, ||U V||_F^2 = <U^T U, V V^T>, with
    U = [B_mean, p_1 B_1 ..] and V = [A_mean; -A_1; ..]: a diagnostic should not cost m x n products.
    It runs in the factors' dtype; in float32 errors below about 1e-3 are rounding.
    """
    errors: dict[str, float] = {}
    for group in _shape_groups(updates, names):
        b_stack, a_stack = _stacked(updates, weights, group)
        b_mean = torch.stack([layers[n].b for n in group])
        a_mean = torch.stack([layers[n].a for n in group])
        u = torch.cat([b_mean, b_stack], dim=-1)
        v = torch.cat([a_mean, -a_stack], dim=-2)
        products = (u.mT @ u) * (v @ v.mT)
        rank = b_mean.shape[-1]
        difference = products.sum(dim=(-2, -1)).clamp_min(0.0).sqrt()
        reference = products[..., rank:, rank:].sum(dim=(-2, -1)).clamp_min(0.0).sqrt()
        for name, diff, ref in zip(group, difference.tolist(), reference.tolist(), strict=True):
            errors[name] = diff / ref if ref > 0 else (0.0 if diff == 0 else math.inf)
    return errors
