"""Laplacian smoothing of a released gradient matrix: (I - s Laplacian)^-1 g with periodic boundaries, by FFT.

The periodic 2-D Laplacian is diagonal in the discrete Fourier basis: frequency (k, l) of an H x W matrix
is an eigenvector with eigenvalue -(4 - 2 cos(2 pi k / H) - 2 cos(2 pi l / W)). Solving the system is
therefore one forward FFT, a division per frequency, and one inverse FFT. The filter is linear and reads
no record, so applied to a DP release it is post-processing and costs no privacy.
"""

from __future__ import annotations

import functools
import math

import torch

from aslora_core.config import GradientSmoothing, TrainingSettings

GAIN_CACHE_SIZE = 64
"""Distinct (H, W, s) gains kept: a few matrix shapes per model."""


@functools.lru_cache(maxsize=GAIN_CACHE_SIZE)
def _gain(rows: int, columns: int, strength: float) -> torch.Tensor:
    """1 / (1 + s (4 - 2 cos(2 pi k / H) - 2 cos(2 pi l / W))) on the half spectrum of a real H x W
    matrix (l = 0 .. W // 2), in float64 on the CPU."""
    row_frequency = torch.arange(rows, dtype=torch.float64)
    column_frequency = torch.arange(columns // 2 + 1, dtype=torch.float64)
    row_term = 2.0 - 2.0 * torch.cos(2.0 * math.pi * row_frequency / rows)
    column_term = 2.0 - 2.0 * torch.cos(2.0 * math.pi * column_frequency / columns)
    return 1.0 / (1.0 + strength * (row_term[:, None] + column_term[None, :]))


def laplacian_gain(rows: int, columns: int, strength: float) -> torch.Tensor:
    """The filter's gain at every frequency (k, l) of an H x W matrix, l up to W // 2 (the rest mirror)."""
    if rows < 1 or columns < 1:
        raise ValueError(f"a gradient matrix needs positive dimensions, got {rows} x {columns}")
    if not (math.isfinite(strength) and strength > 0):
        raise ValueError(f"smoothing strength must be positive and finite, got {strength}")
    return _gain(rows, columns, float(strength))


def laplacian_smooth(gradient: torch.Tensor, strength: float) -> torch.Tensor:
    """x with (I - s Laplacian) x = `gradient` (an H x W matrix, periodic boundaries), in its dtype and
    on its device; computed in float64."""
    if gradient.dim() != 2:
        raise ValueError(f"Laplacian smoothing takes a matrix, got shape {tuple(gradient.shape)}")
    rows, columns = gradient.shape
    gain = laplacian_gain(rows, columns, strength).to(gradient.device)
    spectrum = torch.fft.rfft2(gradient.to(torch.float64))
    smoothed: torch.Tensor = torch.fft.irfft2(spectrum * gain, s=(rows, columns))
    return smoothed.to(gradient.dtype)


def gradient_smoother(training: TrainingSettings) -> GradientSmoother | None:
    """What the run plan asks a silo to do to each released factor gradient; None: nothing."""
    if training.smoothing is GradientSmoothing.NONE:
        return None
    return GradientSmoother(training.smoothing_strength)


class GradientSmoother:
    """Laplacian smoothing at one strength, applied in place to released gradients."""

    def __init__(self, strength: float) -> None:
        laplacian_gain(1, 1, strength)  # validates the strength
        self.strength = strength

    def smooth_(self, gradient: torch.Tensor) -> None:
        """Replace `gradient` (a matrix) by its smoothed version."""
        gradient.copy_(laplacian_smooth(gradient, self.strength))
