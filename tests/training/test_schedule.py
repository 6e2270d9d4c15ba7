"""The learning-rate schedule: its scales per round, and the trainer's steps shrinking with them."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import torch

from aslora_core.adapters import read_adapter
from aslora_core.config import LrSchedule
from aslora_core.factor_choice import FactorChoice
from aslora_core.factors import AdapterState
from aslora_core.training.schedule import LearningRates, round_lr_scale
from tests.training.helpers import encoded_texts, make_trainer, tiny_lora_model, with_nonzero_b

ROUNDS = 8
QUARTER = 0.25


def test_constant_keeps_every_round_at_the_configured_rates() -> None:
    assert {round_lr_scale(LrSchedule.CONSTANT, t, ROUNDS) for t in range(ROUNDS)} == {1.0}


def test_cosine_starts_full_halves_midway_and_falls_towards_zero() -> None:
    scales = [round_lr_scale(LrSchedule.COSINE, t, ROUNDS) for t in range(ROUNDS)]
    assert scales[0] == 1.0
    assert scales[ROUNDS // 2] == pytest.approx(0.5)
    assert all(later < earlier for earlier, later in itertools.pairwise(scales))
    assert 0 < scales[-1] == pytest.approx((1 + math.cos(math.pi * (ROUNDS - 1) / ROUNDS)) / 2)


@pytest.mark.parametrize("round_index", [-1, ROUNDS])
def test_a_round_outside_the_run_is_refused(round_index: int) -> None:
    with pytest.raises(ValueError, match="is not one of"):
        round_lr_scale(LrSchedule.COSINE, round_index, ROUNDS)


def test_learning_rates_scale_the_factor_rate() -> None:
    rates = LearningRates(lr=2.0, schedule=LrSchedule.COSINE, rounds=ROUNDS)
    assert rates.factor_lr(ROUNDS // 2) == pytest.approx(1.0)


def _one_step(tiny_model_dir: Path, lr_scale: float) -> tuple[AdapterState, AdapterState]:
    """The adapter before and after one non-private SGD step at `lr_scale` (same data, same seeds)."""
    model = tiny_lora_model(tiny_model_dir)
    start = with_nonzero_b(read_adapter(model))
    trainer = make_trainer(model, encoded_texts(tiny_model_dir, 32), local_steps=1)
    selection = dict.fromkeys(start.layer_names, FactorChoice.B)
    trainer.train_round(0, start, selection, noise_multiplier=0.0, lr_scale=lr_scale)
    return start, read_adapter(model)


def test_the_trainer_steps_at_the_scaled_rates(tiny_model_dir: Path) -> None:
    start, full = _one_step(tiny_model_dir, 1.0)
    _, quarter = _one_step(tiny_model_dir, QUARTER)
    for layer in start.layer_names:
        step = full.layers[layer].b - start.layers[layer].b
        assert step.abs().max() > 0
        torch.testing.assert_close(quarter.layers[layer].b - start.layers[layer].b, QUARTER * step)
    for name, tensor in start.head.items():
        torch.testing.assert_close(quarter.head[name] - tensor, QUARTER * (full.head[name] - tensor))
