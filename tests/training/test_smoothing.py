"""Laplacian smoothing by FFT against its formula and against a direct solve of (I - s Laplacian) x = g."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aslora_core.config import ConfigError, GradientSmoothing, TrainingSettings
from aslora_core.training.smoothing import gradient_smoother, laplacian_gain, laplacian_smooth

STRENGTHS = (0.25, 1.0, 3.0)
SHAPES = ((1, 5), (2, 3), (4, 6), (5, 7), (8, 4), (3, 1))


def _periodic_laplacian(rows: int, columns: int) -> np.ndarray:
    """The (H W) x (H W) matrix of x -> sum of the four periodic neighbours minus 4 x, row-major."""
    size = rows * columns
    operator = np.zeros((size, size))
    for i in range(rows):
        for j in range(columns):
            here = i * columns + j
            operator[here, here] -= 4.0
            for di, dj in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                operator[here, ((i + di) % rows) * columns + (j + dj) % columns] += 1.0
    return operator


@pytest.mark.parametrize("strength", STRENGTHS)
@pytest.mark.parametrize(("rows", "columns"), SHAPES)
def test_equals_a_direct_solve(rows: int, columns: int, strength: float) -> None:
    gradient = torch.randn(rows, columns, generator=torch.Generator().manual_seed(rows * 31 + columns))
    system = np.eye(rows * columns) - strength * _periodic_laplacian(rows, columns)
    expected = np.linalg.solve(system, gradient.double().numpy().reshape(-1)).reshape(rows, columns)
    smoothed = laplacian_smooth(gradient.double(), strength)
    np.testing.assert_allclose(smoothed.numpy(), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("strength", STRENGTHS)
def test_a_constant_matrix_passes_unchanged(strength: float) -> None:
    assert laplacian_gain(6, 4, strength)[0, 0].item() == 1.0
    constant = torch.full((6, 4), 0.3, dtype=torch.float64)
    torch.testing.assert_close(laplacian_smooth(constant, strength), constant)


@pytest.mark.parametrize("strength", STRENGTHS)
def test_the_highest_frequency_is_damped_by_one_plus_eight_s(strength: float) -> None:
    rows, columns = 6, 8
    gain = laplacian_gain(rows, columns, strength)
    assert gain[rows // 2, columns // 2].item() == pytest.approx(1.0 / (1.0 + 8.0 * strength), rel=1e-12)
    checkerboard = torch.tensor(
        [[(-1.0) ** (i + j) for j in range(columns)] for i in range(rows)], dtype=torch.float64
    )
    torch.testing.assert_close(
        laplacian_smooth(checkerboard, strength), checkerboard / (1.0 + 8.0 * strength)
    )


def test_keeps_dtype_and_rejects_what_is_not_a_matrix() -> None:
    gradient = torch.randn(4, 3)
    assert laplacian_smooth(gradient, 1.0).dtype == torch.float32
    with pytest.raises(ValueError, match="matrix"):
        laplacian_smooth(torch.randn(4), 1.0)
    with pytest.raises(ValueError, match="strength"):
        laplacian_gain(4, 3, 0.0)


def test_the_plan_names_the_smoother() -> None:
    assert gradient_smoother(TrainingSettings()) is None
    smoother = gradient_smoother(
        TrainingSettings(smoothing=GradientSmoothing.LAPLACIAN, smoothing_strength=2.0)
    )
    assert smoother is not None
    gradient = torch.randn(5, 4, dtype=torch.float64)
    expected = laplacian_smooth(gradient, 2.0)
    smoother.smooth_(gradient)
    torch.testing.assert_close(gradient, expected)
    with pytest.raises(ConfigError, match="smoothing_strength"):
        TrainingSettings(smoothing=GradientSmoothing.LAPLACIAN, smoothing_strength=-1.0)
