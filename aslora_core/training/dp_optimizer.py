"""Opacus' DP optimizer with its Gaussian noise drawn from a project noise source."""

from __future__ import annotations

from typing import Any

import torch
from opacus.optimizers import DPOptimizer

from aslora_core.privacy.noise import NoiseSource


class SourcedNoiseDPOptimizer(DPOptimizer):  # type: ignore[misc]
    """Opacus' DPOptimizer (per-sample clipping, accumulation, scaling) with noise from a `NoiseSource`.

    Opacus' own secure mode needs torchcsprng, which has no release for torch 2; the noise source
    draws from the operating system's CSPRNG instead (or from a seeded generator in tests).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, *, noise_source: NoiseSource, **kwargs: Any) -> None:
        super().__init__(optimizer, **kwargs)
        self.noise_source = noise_source

    def add_noise(self) -> None:
        """Add N(0, (sigma * C)^2) to every clipped summed gradient and store it in `p.grad`."""
        std = self.noise_multiplier * self.max_grad_norm
        for param in self.params:
            summed: torch.Tensor = param.summed_grad
            noise = self.noise_source.normal(summed.shape, std, summed.dtype, summed.device)
            param.grad = (summed + noise).view_as(param)
