"""Clipping groups of the DP optimizer: each group clipped to its own norm, noise in proportion."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from opacus.optimizers import DPOptimizer
from scipy import stats
from torch import nn

from aslora_core.privacy import make_noise_source
from aslora_core.training.dp_optimizer import ClipGroup, SourcedNoiseDPOptimizer

SAMPLES = 16
SIGNIFICANCE = 0.001
FACTOR_CLIP, HEAD_CLIP = 0.3, 2.0


def _set_samples(param: nn.Parameter, samples: torch.Tensor) -> None:
    """Per-sample gradients, as Opacus' hooks would leave them."""
    setattr(param, "grad_sample", samples)  # noqa: B010


def _samples(param: nn.Parameter) -> torch.Tensor:
    value: torch.Tensor = getattr(param, "grad_sample")  # noqa: B009
    return value


def _summed(param: nn.Parameter) -> torch.Tensor:
    """The clipped sum the optimizer accumulated."""
    value: torch.Tensor = getattr(param, "summed_grad")  # noqa: B009
    return value


def _params() -> tuple[nn.Parameter, nn.Parameter, nn.Parameter]:
    """Two 'factor' tensors and one 'head' tensor, with per-sample gradients of known sizes."""
    generator = torch.Generator().manual_seed(0)
    params = (nn.Parameter(torch.zeros(4, 3)), nn.Parameter(torch.zeros(5)), nn.Parameter(torch.zeros(2, 6)))
    for scale, param in zip((0.5, 0.2, 3.0), params, strict=True):
        _set_samples(param, scale * torch.randn((SAMPLES, *param.shape), generator=generator))
    return params


def _optimizer(
    params: tuple[nn.Parameter, ...], groups: list[ClipGroup], sigma: float
) -> SourcedNoiseDPOptimizer:
    return SourcedNoiseDPOptimizer(
        torch.optim.SGD(params, lr=1.0),
        noise_source=make_noise_source(False, 5),
        clip_groups=groups,
        noise_multiplier=sigma,
        expected_batch_size=SAMPLES,
        loss_reduction="sum",
    )


def test_each_group_is_clipped_to_its_own_norm() -> None:
    a, b, head = _params()
    samples = {id(p): _samples(p).clone() for p in (a, b, head)}
    optimizer = _optimizer(
        (a, b, head), [ClipGroup([a, b], FACTOR_CLIP), ClipGroup([head], HEAD_CLIP)], sigma=0.0
    )
    optimizer.clip_and_accumulate()
    for group, clip in (([a, b], FACTOR_CLIP), ([head], HEAD_CLIP)):
        norms = torch.stack([samples[id(p)].reshape(SAMPLES, -1).norm(dim=1) for p in group], 1).norm(dim=1)
        factor = (clip / (norms + 1e-6)).clamp(max=1.0)
        assert (norms * factor <= clip + 1e-6).all()
        assert (factor < 1).any()
        for param in group:
            expected = torch.einsum("i,i...", factor, samples[id(param)])
            torch.testing.assert_close(_summed(param), expected)


def test_one_group_is_opacus_flat_clipping_bit_for_bit() -> None:
    ours = _params()
    theirs = _params()
    mine = _optimizer(ours, [ClipGroup(list(ours), FACTOR_CLIP)], sigma=0.0)
    stock = DPOptimizer(
        torch.optim.SGD(theirs, lr=1.0),
        noise_multiplier=0.0,
        max_grad_norm=FACTOR_CLIP,
        expected_batch_size=SAMPLES,
        loss_reduction="sum",
    )
    mine.clip_and_accumulate()
    stock.clip_and_accumulate()
    for left, right in zip(ours, theirs, strict=True):
        assert torch.equal(_summed(left), _summed(right))


def test_noise_of_each_group_is_sigma_times_its_clip_times_root_two() -> None:
    """Zero gradients: what is released is the noise alone, std sigma * C_g * sqrt(G) per group."""
    params = tuple(nn.Parameter(torch.zeros(200, 50)) for _ in range(2))
    for param in params:
        _set_samples(param, torch.zeros((SAMPLES, *param.shape)))
    sigma = 1.1
    optimizer = _optimizer(
        params, [ClipGroup([params[0]], FACTOR_CLIP), ClipGroup([params[1]], HEAD_CLIP)], sigma
    )
    optimizer.clip_and_accumulate()
    optimizer.add_noise()
    for index, (param, clip) in enumerate(zip(params, (FACTOR_CLIP, HEAD_CLIP), strict=True)):
        expected = sigma * clip * math.sqrt(2)
        assert optimizer.noise_std(index) == pytest.approx(expected)
        assert param.grad is not None
        noise = param.grad.double().numpy().ravel()
        statistic = float(np.sum(noise**2) / expected**2)
        low, high = stats.chi2.ppf([SIGNIFICANCE / 2, 1 - SIGNIFICANCE / 2], df=noise.size)
        assert low < statistic < high


def test_whitened_contribution_of_one_sample_has_norm_at_most_one() -> None:
    """The privacy argument: group g scaled by 1 / (C_g sqrt(G)) leaves each sample's clipped gradient in
    the unit ball, so the noise, whitened the same way, is isotropic with multiplier sigma."""
    a, b, head = _params()
    groups = [ClipGroup([a, b], FACTOR_CLIP), ClipGroup([head], HEAD_CLIP)]
    for sample in range(SAMPLES):
        single = _params()
        for param, source in zip(single, (a, b, head), strict=True):
            _set_samples(param, _samples(source)[sample : sample + 1].clone())
        optimizer = _optimizer(
            single, [ClipGroup(list(single[:2]), FACTOR_CLIP), ClipGroup([single[2]], HEAD_CLIP)], 0.0
        )
        optimizer.clip_and_accumulate()
        squared = sum(
            float(_summed(p).square().sum()) / (group.clip_norm**2 * len(groups))
            for group, members in zip(groups, (single[:2], single[2:]), strict=True)
            for p in members
        )
        assert squared <= 1.0 + 1e-6


def test_a_parameter_outside_every_group_is_refused() -> None:
    a, b, head = _params()
    with pytest.raises(ValueError, match="no clip group"):
        _optimizer((a, b, head), [ClipGroup([a, b], FACTOR_CLIP)], sigma=1.0)


def test_a_held_parameter_takes_no_part_in_clipping_and_gets_no_noise() -> None:
    a, b, head = _params()
    samples = {id(p): _samples(p).clone() for p in (a, b, head)}
    optimizer = _optimizer((a, b, head), [ClipGroup([a, b], FACTOR_CLIP), ClipGroup([head], HEAD_CLIP)], 1.0)
    optimizer.hold([b])
    optimizer.clip_and_accumulate()
    # a's samples are clipped by their own norm: b's, held, count for nothing in the group's norm
    norms = samples[id(a)].reshape(SAMPLES, -1).norm(dim=1)
    factor = (FACTOR_CLIP / (norms + 1e-6)).clamp(max=1.0)
    assert (factor < 1).any()
    torch.testing.assert_close(_summed(a), torch.einsum("i,i...", factor, samples[id(a)]))
    assert torch.equal(_summed(b), torch.zeros_like(b))
    optimizer.add_noise()
    assert b.grad is not None and a.grad is not None
    assert torch.equal(b.grad, torch.zeros_like(b))
    assert not torch.equal(a.grad, _summed(a))
