"""The released score statistics come from the noised gradients: under a large sigma they are the noise's."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from aslora_core.adapters import read_adapter
from aslora_core.config import ClippingMode, OptimizerKind
from aslora_core.factor_choice import Factor, FactorChoice
from aslora_core.factors import AdapterState
from tests.training.helpers import encoded_texts, make_trainer, tiny_lora_model, with_nonzero_b

SIGMA = 1e3
"""Large enough that the noise dwarfs any clipped gradient (the test checks it does)."""
CLIP_NORM = 0.7
HEAD_CLIP_NORM = 3.0
GROUPS_WITH_HEAD_CLIP = 2
"""Clip groups when the head is clipped apart: every group's noise then grows by sqrt(2)."""
RECORDS = 32
BATCH_SIZE = 8
LOCAL_STEPS = 4
LR = 1e-4
"""Small, so that steps of noise this large leave the model where its gradients stay finite."""
VALUES = 40
"""Released values of grad_sq (and as many of proj_sq) per test: rounds run until there are this many."""
SIGNIFICANCE = 1e-6
"""Two-sided level of the chi-square test on the spread: a false alarm once in a million seeds."""
MEAN_STANDARD_ERRORS = 5.0
"""The standardized values' mean may sit this many standard errors from 0 (p below 1e-6)."""
NOISE_OVER_SIGNAL = 100.0
"""How many times the largest cross-step product of un-noised gradients the released values must reach."""


def _alternating(state: AdapterState) -> dict[str, FactorChoice]:
    return {name: FactorChoice.A if i % 2 else FactorChoice.B for i, name in enumerate(state.layer_names)}


def _noise_dims(state: AdapterState, layer: str, which: Factor) -> tuple[float, float]:
    """E<n, n'>^2 / v^2 for two independent N(0, v I) draws n, n' on the factor: its entries d for the
    plain product, f ||Gram||_F^2 for the projected one (free dimension f, the partner's r x r Gram)."""
    a, b = state.layers[layer].a.double(), state.layers[layer].b.double()
    gram, free_dim = (a @ a.T, b.shape[0]) if which is Factor.B else (b.T @ b, a.shape[1])
    return float(state.layers[layer].factor(which).numel()), free_dim * float(gram.square().sum())


def _assert_standard_noise(values: np.ndarray) -> None:
    """`values` look like independent N(0, 1) draws: their mean square by chi-square, their mean by z."""
    count = values.size
    low, high = stats.chi2.ppf([SIGNIFICANCE / 2, 1 - SIGNIFICANCE / 2], df=count)
    assert low < float(np.sum(values**2)) < high, (float(np.sum(values**2)), low, high)
    assert abs(float(values.mean())) < MEAN_STANDARD_ERRORS / math.sqrt(count)


@pytest.mark.parametrize("head_clip_norm", [None, HEAD_CLIP_NORM], ids=["one-clip", "head-clip"])
@pytest.mark.parametrize("clipping", [ClippingMode.TRAINED, ClippingMode.JOINT])
def test_released_statistics_have_the_spread_of_the_noise(
    tiny_model_dir: Path, clipping: ClippingMode, head_clip_norm: float | None
) -> None:
    """Each step releases g_k + n_k, n_k ~ N(0, v I) with v = (sigma C sqrt(G) / b)^2. The mean over the
    T (T - 1) ordered pairs k != k' of <n_k, n_k'> has mean 0 and variance 2 d v^2 / (T (T - 1)): each of
    the T (T - 1) / 2 unordered pairs has variance d v^2, distinct pairs are uncorrelated, and every pair
    is counted twice. The projected product likewise, with f ||Gram||_F^2 in place of d."""
    model = tiny_lora_model(tiny_model_dir)
    state = with_nonzero_b(read_adapter(model))
    selection = _alternating(state)
    trainer = make_trainer(
        model,
        encoded_texts(tiny_model_dir, RECORDS),
        clipping=clipping,
        batch_size=BATCH_SIZE,
        local_steps=LOCAL_STEPS,
        lr=LR,
        clip_norm=CLIP_NORM,
        head_clip_norm=head_clip_norm,
    )
    groups = 1 if head_clip_norm is None else GROUPS_WITH_HEAD_CLIP
    noise_variance = (SIGMA * CLIP_NORM * math.sqrt(groups) / BATCH_SIZE) ** 2
    scale = 2 * noise_variance**2 / (LOCAL_STEPS * (LOCAL_STEPS - 1))
    expected_keys = {
        (layer, which)
        for layer, choice in selection.items()
        for which in Factor
        if clipping is ClippingMode.JOINT or which in choice.factors
    }
    grad_sq: list[float] = []
    grad_z: list[float] = []
    proj_z: list[float] = []
    for round_index in range(math.ceil(VALUES / len(expected_keys))):
        result = trainer.train_round(round_index, state, selection, noise_multiplier=SIGMA)
        assert result.update.statistics is not None
        released = result.update.statistics.layers
        assert {(layer, which) for layer, per in released.items() for which in per} == expected_keys
        for layer, which in sorted(expected_keys):
            value = released[layer][which]
            grad_dim, proj_dim = _noise_dims(state, layer, which)
            grad_sq.append(value.grad_sq)
            grad_z.append(value.grad_sq / math.sqrt(scale * grad_dim))
            proj_z.append(value.proj_sq / math.sqrt(scale * proj_dim))
    # Un-noised, a step releases at most N clipped gradients over b, so |<g_k, g_k'>| <= (C N / b)^2.
    unnoised_bound = (CLIP_NORM * RECORDS / BATCH_SIZE) ** 2
    assert math.sqrt(float(np.mean(np.square(grad_sq)))) > NOISE_OVER_SIGNAL * unnoised_bound
    _assert_standard_noise(np.array(grad_z))
    _assert_standard_noise(np.array(proj_z))


def test_released_secant_sums_have_the_spread_of_the_noise(tiny_model_dir: Path) -> None:
    """The trainer releases secant sums for exactly the factors its layers train, and under noise that
    dwarfs the curvature's signal (lr LR) they are the noise's: secant - K v d, with K = T - 1 pairs, has
    mean 0 and the variance v step_change + K v^2 d the coordinator uses (docs/algorithm.md 3.6).
    Under Adam the step is not -lr times the released gradient, and none are released."""
    model = tiny_lora_model(tiny_model_dir)
    state = with_nonzero_b(read_adapter(model))
    selection = _alternating(state)
    data = encoded_texts(tiny_model_dir, RECORDS)
    trainer = make_trainer(
        model, data, batch_size=BATCH_SIZE, local_steps=LOCAL_STEPS, lr=LR, clip_norm=CLIP_NORM
    )
    noise_variance = (SIGMA * CLIP_NORM / BATCH_SIZE) ** 2
    trained = {(layer, which) for layer, choice in selection.items() for which in choice.factors}
    standardized: list[float] = []
    for round_index in range(math.ceil(VALUES / len(trained))):
        statistics = trainer.train_round(
            round_index, state, selection, noise_multiplier=SIGMA
        ).update.statistics
        assert statistics is not None
        released = {
            (layer, which): entry.curvature
            for layer, per in statistics.layers.items()
            for which, entry in per.items()
            if entry.curvature is not None
        }
        assert set(released) == trained
        for (layer, which), secants in released.items():
            size = state.layers[layer].factor(which).numel()
            pairs = LOCAL_STEPS - 1
            spread = noise_variance * secants.step_change + pairs * noise_variance**2 * size
            standardized.append((secants.secant - pairs * noise_variance * size) / math.sqrt(spread))
    _assert_standard_noise(np.array(standardized))
    adam = make_trainer(
        model, data, batch_size=BATCH_SIZE, local_steps=LOCAL_STEPS, lr=LR, optimizer=OptimizerKind.ADAM
    )
    statistics = adam.train_round(0, state, selection, noise_multiplier=SIGMA).update.statistics
    assert statistics is not None
    assert all(entry.curvature is None for per in statistics.layers.values() for entry in per.values())
