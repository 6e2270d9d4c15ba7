"""LA-LoRA's steps within a round: B on even steps, A on odd ones, A at B's learning rate over the ratio."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from peft import PeftModel

from aslora_core.adapters import lora_parameters, read_adapter
from aslora_core.config import ClippingEngine, ClippingMode, TrainingSettings
from aslora_core.factor_choice import Factor, FactorChoice
from aslora_core.factors import AdapterState
from aslora_core.policy_traits import FEDIT, LALORA
from aslora_core.training.factor_steps import EVERY_SELECTED, FactorSteps
from tests.training.helpers import encoded_texts, make_trainer, tiny_lora_model, with_nonzero_b

LOCAL_STEPS = 4
SIGMA = 1.0


def _snapshots(model: PeftModel) -> dict[tuple[str, Factor], torch.Tensor]:
    return {
        (layer, which): param.detach().clone()
        for layer, params in lora_parameters(model).items()
        for which, param in params.items()
    }


def test_the_policy_traits_name_the_steps() -> None:
    training = TrainingSettings(alternation_lr_ratio=3.0)
    assert FactorSteps.of(FEDIT, training) == EVERY_SELECTED
    steps = FactorSteps.of(LALORA, training)
    assert [steps.stepped(FactorChoice.BOTH, step) for step in range(4)] == [
        (Factor.B,),
        (Factor.A,),
        (Factor.B,),
        (Factor.A,),
    ]
    assert steps.stepped(FactorChoice.A, 0) == (Factor.A,)
    assert steps.lr_multiplier(Factor.B) == 1.0
    assert steps.lr_multiplier(Factor.A) == pytest.approx(1.0 / 3.0)
    assert EVERY_SELECTED.stepped(FactorChoice.BOTH, 1) == (Factor.A, Factor.B)


@pytest.mark.parametrize(
    ("clipping", "engine"),
    [
        (ClippingMode.TRAINED, ClippingEngine.HOOKS),
        (ClippingMode.JOINT, ClippingEngine.HOOKS),
        (ClippingMode.TRAINED, ClippingEngine.GHOST),
    ],
)
def test_each_step_updates_only_its_factor(
    tiny_model_dir: Path, clipping: ClippingMode, engine: ClippingEngine
) -> None:
    model = tiny_lora_model(tiny_model_dir)
    start = with_nonzero_b(read_adapter(model))
    trainer = make_trainer(
        model,
        encoded_texts(tiny_model_dir, 32),
        clipping=clipping,
        local_steps=LOCAL_STEPS,
        clipping_engine=engine,
    )
    after_step = [_snapshots(model)]
    selection = dict.fromkeys(start.layer_names, FactorChoice.BOTH)
    steps = FactorSteps(alternate=True, lr_ratio=2.0)

    def record(done: int) -> None:
        after_step.append(_snapshots(model))
        assert len(after_step) == done + 1

    update = trainer.train_round(0, start, selection, SIGMA, record, factor_steps=steps).update
    after_step[0] = {k: start.layers[k[0]].factor(k[1]) for k in after_step[0]}
    assert len(after_step) == LOCAL_STEPS + 1
    for step in range(LOCAL_STEPS):
        moved = Factor.B if step % 2 == 0 else Factor.A
        for (layer, which), before in after_step[step].items():
            changed = not torch.equal(after_step[step + 1][layer, which], before)
            assert changed == (which is moved), (step, layer, which)
    assert all(set(factors) == {Factor.A, Factor.B} for factors in update.factors.values())


def _a_step(model_dir: Path, start: AdapterState, ratio: float) -> dict[str, torch.Tensor]:
    """A's change over a two-step round (B, then A) without noise, at B/A learning-rate ratio `ratio`."""
    model = tiny_lora_model(model_dir)
    trainer = make_trainer(model, encoded_texts(model_dir, 32), local_steps=2)
    selection = dict.fromkeys(start.layer_names, FactorChoice.BOTH)
    steps = FactorSteps(alternate=True, lr_ratio=ratio)
    trainer.train_round(0, start, selection, 0.0, factor_steps=steps)
    after = read_adapter(model)
    return {name: after.layers[name].a - start.layers[name].a for name in start.layer_names}


def test_a_steps_at_the_factor_rate_over_the_ratio(tiny_model_dir: Path) -> None:
    start = with_nonzero_b(read_adapter(tiny_lora_model(tiny_model_dir)))
    at_one = _a_step(tiny_model_dir, start, 1.0)
    at_four = _a_step(tiny_model_dir, start, 4.0)
    for name, change in at_one.items():
        assert change.abs().max() > 0
        torch.testing.assert_close(at_four[name] * 4.0, change)
