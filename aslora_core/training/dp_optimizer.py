"""Opacus' DP optimizer with clipping groups and its Gaussian noise drawn from a project noise source."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from opacus.optimizers import DPOptimizer
from opacus.optimizers.optimizer import _check_processed_flag, _mark_as_processed
from torch import nn

from aslora_core.privacy.noise import NoiseSource
from aslora_core.training.ranks import RankCollective

NORM_GUARD = 1e-6
"""Added to a per-sample norm before dividing by it, as Opacus does."""


@dataclass(frozen=True)
class ClipGroup:
    """Parameters whose per-sample gradients are clipped together to `clip_norm`."""

    params: Sequence[nn.Parameter]
    clip_norm: float


class SourcedNoiseDPOptimizer(DPOptimizer):  # type: ignore[misc]
    """Opacus' DPOptimizer (per-sample clipping, accumulation, scaling) with noise from a `NoiseSource`.

    Each of the G clip groups is clipped to its own norm C_g and noised with standard deviation
    `sigma * C_g * sqrt(G)`: scaling group g by 1 / (C_g sqrt(G)) turns this into one clip norm of 1 with
    isotropic noise sigma, so the privacy is that of `sigma` whatever the split (docs/algorithm.md). With
    one group this is Opacus' flat clipping. Opacus' own secure mode needs torchcsprng, which has no
    release for torch 2; the noise source draws from the operating system's CSPRNG instead (or from a
    seeded generator in tests).
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        *,
        noise_source: NoiseSource,
        clip_groups: Sequence[ClipGroup],
        ranks: RankCollective | None = None,
        **kwargs: Any,
    ) -> None:
        """`ranks`, when training across ranks: the clipped sums are added up over them and noised once."""
        super().__init__(optimizer, max_grad_norm=max(g.clip_norm for g in clip_groups), **kwargs)
        self.noise_source = noise_source
        self.ranks = ranks
        group_of = {id(p): index for index, group in enumerate(clip_groups) for p in group.params}
        missing = [p for p in self.params if id(p) not in group_of]
        if missing:
            raise ValueError(f"{len(missing)} optimized parameters belong to no clip group")
        self._group_index = [group_of[id(p)] for p in self.params]
        self._clip_norms = [g.clip_norm for g in clip_groups]
        self._held: frozenset[int] = frozenset()

    def hold(self, params: Iterable[nn.Parameter]) -> None:
        """From the next step on, leave `params` out: their per-sample gradients count for nothing in the
        clipping, and their released gradient is zero, without noise (replaces the previous hold)."""
        self._held = frozenset(id(p) for p in params)

    def is_held(self, param: nn.Parameter) -> bool:
        """Whether `param` is held out of the clipping and noise (`hold`)."""
        return id(param) in self._held

    def noise_std(self, group: int) -> float:
        """Standard deviation of the noise added to the summed gradient of clip group `group`."""
        return float(self.noise_multiplier) * self._clip_norms[group] * math.sqrt(len(self._clip_norms))

    def group_params(self, group: int) -> list[nn.Parameter]:
        """The optimized parameters of clip group `group`, in optimizer order."""
        return [p for p, index in zip(self.params, self._group_index, strict=True) if index == group]

    @property
    def group_count(self) -> int:
        """How many clip groups there are."""
        return len(self._clip_norms)

    def clip_factors(self, norms: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Per clip group, each sample's factor min(1, C_g / ||g_i||) from the per-sample gradient norms of
        every optimized parameter (`norms`, in optimizer order, each of length batch)."""
        batch = len(norms[0])
        factors: list[torch.Tensor] = []
        counted = [
            (norm, group)
            for norm, group, param in zip(norms, self._group_index, self.params, strict=True)
            if not self.is_held(param)
        ]
        for index, clip_norm in enumerate(self._clip_norms):
            members = [norm for norm, group in counted if group == index]
            if not members or batch == 0:
                factors.append(torch.zeros((batch,), device=norms[0].device))
                continue
            per_sample = torch.stack(members, dim=1).norm(2, dim=1)
            factors.append((clip_norm / (per_sample + NORM_GUARD)).clamp(max=1.0))
        return factors

    def clear_batch(self) -> None:
        """Stand in for an empty logical batch: no example, so nothing to clip (the noise still comes)."""
        for param in self.params:
            param.grad_sample = torch.zeros((0, *param.shape), dtype=param.dtype, device=param.device)

    def clip_and_accumulate(self) -> None:
        """Clip each sample's gradient group by group, in the parameter's (float32 master) dtype, and add it
        to `p.summed_grad`."""
        samples = [self._get_flat_grad_sample(p).to(p.dtype) for p in self.params]
        batch = len(samples[0])
        factors = self.clip_factors([g.reshape(batch, -1).norm(2, dim=-1) for g in samples])
        for param, flat, group in zip(self.params, samples, self._group_index, strict=True):
            _check_processed_flag(param.grad_sample)
            if self.is_held(param):
                clipped = torch.zeros_like(param)
            else:
                clipped = torch.einsum("i,i...", factors[group].to(flat.device, param.dtype), flat)
            if param.summed_grad is not None:
                param.summed_grad += clipped
            else:
                param.summed_grad = clipped
            _mark_as_processed(param.grad_sample)

    def add_noise(self) -> None:
        """Add N(0, noise_std(g)^2) to every clipped summed gradient of group g and store it in `p.grad`
        (a held parameter's zero sum gets no noise; across ranks: to the sum of every rank's clipped sums, at
        the lead rank, the same at every rank)."""
        for param in self.params:
            _check_processed_flag(param.summed_grad)
        summed: list[torch.Tensor] = [param.summed_grad for param in self.params]
        noised = self._noised(summed) if self.ranks is None else self.ranks.noise_once(summed, self._noised)
        for param, grad in zip(self.params, noised, strict=True):
            param.grad = grad.view_as(param)
            _mark_as_processed(param.summed_grad)

    def _noised(self, summed: list[torch.Tensor]) -> list[torch.Tensor]:
        """Each clipped sum (in optimizer order) plus its clip group's noise from the noise source; a held
        parameter's sum as it is."""
        return [
            tensor
            if self.is_held(param)
            else tensor
            + self.noise_source.normal(tensor.shape, self.noise_std(group), tensor.dtype, tensor.device)
            for tensor, param, group in zip(summed, self.params, self._group_index, strict=True)
        ]
