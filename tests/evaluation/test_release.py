"""The evaluation release: clipped sums over a silo's records, the Gaussian noise at the stated scale, and
the federated figures pooled from several silos' sums."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from peft import PeftModel
from scipy import stats

from aslora_core.adapters import read_adapter
from aslora_core.config import TaskName
from aslora_core.data import EncodedDataset
from aslora_core.evaluation_release import clipped_sums, noised
from aslora_core.factors import AdapterState
from aslora_core.federated_evaluation import (
    EvaluationRelease,
    EvaluationSums,
    combine,
    release_sensitivity,
)
from aslora_core.privacy import NoiseSource, SecureNoise, SeededNoise
from aslora_core.tasks import make_task
from tests.training.helpers import small_texts, tiny_lora_model

LOSS_BOUND = 2.0
RECORDS = 24
MAX_LENGTH = 16
RELEASES = 4000
SIGMA = 3.0
SIGNIFICANCE = 1e-4
"""Two-sided level of each statistical test; the secure source's test fails this often by chance."""
HEAD_BLOW_UP = 500.0
"""Scales the head so that confidently wrong examples have losses far above LOSS_BOUND."""
TASK = make_task(TaskName.SEQUENCE_CLASSIFICATION)


@pytest.fixture(scope="module")
def model(tiny_model_dir: Path) -> PeftModel:
    return tiny_lora_model(tiny_model_dir)


@pytest.fixture(scope="module")
def data(tiny_model_dir: Path) -> EncodedDataset:
    return TASK.encode(small_texts(RECORDS), tiny_model_dir, MAX_LENGTH)


def _blown_up(state: AdapterState) -> AdapterState:
    return replace(state, head={name: HEAD_BLOW_UP * tensor for name, tensor in state.head.items()})


def test_sensitivity_is_the_norm_of_one_records_largest_move() -> None:
    assert release_sensitivity(LOSS_BOUND) == pytest.approx(math.sqrt(LOSS_BOUND**2 + 2))
    with pytest.raises(ValueError):
        release_sensitivity(0.0)


def test_one_record_moves_the_loss_sum_by_at_most_the_bound(model: PeftModel, data: EncodedDataset) -> None:
    state = _blown_up(read_adapter(model))
    everyone = clipped_sums(model, state, data, TASK, LOSS_BOUND)
    with torch.no_grad():
        raw_losses = TASK.example_terms(model, data.batch(list(range(len(data))))).loss
    assert float(raw_losses.max()) > 10 * LOSS_BOUND, "the test needs outliers far above the bound"
    for left_out in range(len(data)):
        others = _subset(data, [i for i in range(len(data)) if i != left_out])
        without = clipped_sums(model, state, others, TASK, LOSS_BOUND)
        moved = np.array(
            [
                everyone.loss_sum - without.loss_sum,
                everyone.correct - without.correct,
                everyone.examples - without.examples,
            ]
        )
        assert -1e-9 <= moved[0] <= LOSS_BOUND + 1e-9
        assert moved[1] in (0.0, 1.0)
        assert moved[2] == 1.0
        assert float(np.linalg.norm(moved)) <= release_sensitivity(LOSS_BOUND) + 1e-9


def _subset(data: EncodedDataset, indices: list[int]) -> EncodedDataset:
    return EncodedDataset(data.batch(indices))


@pytest.mark.parametrize("source", [SecureNoise(), SeededNoise(5)], ids=["secure", "seeded"])
def test_released_sums_have_the_stated_variance(
    source: NoiseSource, model: PeftModel, data: EncodedDataset
) -> None:
    exact = clipped_sums(model, read_adapter(model), data, TASK, LOSS_BOUND)
    std = SIGMA * release_sensitivity(LOSS_BOUND)
    released = np.array(
        [
            [r.loss_sum, r.correct, r.examples]
            for r in (noised(exact, LOSS_BOUND, SIGMA, source) for _ in range(RELEASES))
        ]
    )
    errors = (released - np.array([exact.loss_sum, exact.correct, exact.examples])) / std
    count = errors.size
    low, high = stats.chi2.ppf([SIGNIFICANCE / 2, 1 - SIGNIFICANCE / 2], df=count)
    assert low < float(np.sum(errors**2)) < high
    assert abs(float(errors.mean())) * math.sqrt(count) < stats.norm.isf(SIGNIFICANCE / 2)
    # The three coordinates are drawn independently.
    assert abs(np.corrcoef(errors.T)[0, 1]) * math.sqrt(RELEASES) < stats.norm.isf(SIGNIFICANCE / 2)


def test_zero_noise_releases_the_exact_sums() -> None:
    exact = EvaluationSums(loss_sum=7.5, correct=11.0, examples=RECORDS)
    assert noised(exact, LOSS_BOUND, 0.0, SecureNoise()) == exact


def test_pooled_figures_equal_those_over_the_union(model: PeftModel, data: EncodedDataset) -> None:
    state = _blown_up(read_adapter(model))
    parts = [[i for i in range(len(data)) if i % 3 == silo] for silo in range(3)]
    releases = [
        EvaluationRelease(f"silo-{k}", clipped_sums(model, state, _subset(data, part), TASK, LOSS_BOUND), 0.0)
        for k, part in enumerate(parts)
    ]
    union = clipped_sums(model, state, data, TASK, LOSS_BOUND)
    pooled = combine(4, releases, ["silo-x"], LOSS_BOUND)
    assert pooled.accuracy == pytest.approx(union.correct / union.examples, rel=1e-12)
    assert pooled.loss == pytest.approx(union.loss_sum / union.examples, rel=1e-9)
    assert (pooled.silos_released, pooled.silos_asked, pooled.declined) == (3, 4, ("silo-x",))
    assert pooled.examples == RECORDS


def test_pooled_figures_stay_in_range_and_need_examples() -> None:
    wild = EvaluationRelease("a", EvaluationSums(loss_sum=-5.0, correct=30.0, examples=10.0), 1.0)
    pooled = combine(0, [wild], [], LOSS_BOUND)
    assert (pooled.loss, pooled.accuracy) == (0.0, 1.0)
    none = combine(0, [EvaluationRelease("a", EvaluationSums(1.0, 1.0, -3.0), 1.0)], [], LOSS_BOUND)
    assert (none.loss, none.accuracy) == (None, None)
    assert combine(0, [], ["a"], LOSS_BOUND).silos_released == 0
