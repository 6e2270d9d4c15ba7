"""bfloat16 compute: a bfloat16 base under autocast, float32 masters, per-sample gradients and releases."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from peft import PeftModel

from aslora_core.adapters import head_parameters, lora_parameters, read_adapter, write_adapter
from aslora_core.aggregation import aggregate
from aslora_core.aggregation_rule import AggregationRule
from aslora_core.config import LoraSettings, Precision
from aslora_core.evaluation import evaluate
from aslora_core.evaluation_release import clipped_sums
from aslora_core.factor_choice import Factor, FactorChoice
from aslora_core.precision import autocast, model_precision
from aslora_core.tasks.sequence_classification import SequenceClassificationTask
from aslora_core.training.grad_samples import MasterGradSampleModule
from tests.training.helpers import encoded_texts, make_trainer, with_nonzero_b

LABELS = ("negative", "positive")
PER_SAMPLE_TOLERANCE = 2e-2
"""Relative L2 distance allowed between an example's bfloat16 and float32 per-sample gradients."""
FLOAT32_TOLERANCE = 1e-6
EXAMPLES = 8
EVALUATION_LOSS_BOUND = 5.0


def build(model_dir: Path, precision: Precision) -> PeftModel:
    """The tiny BERT classifier with LoRA, its base in `precision`."""
    lora = LoraSettings(rank=4, alpha=8)
    return SequenceClassificationTask().build_model(model_dir, LABELS, lora, seed=0, precision=precision)


def trained_parameters(model: PeftModel) -> list[torch.nn.Parameter]:
    """The LoRA factors and the head, in a fixed order."""
    factors = [p for layer in lora_parameters(model).values() for p in layer.values()]
    return [*factors, *head_parameters(model).values()]


def per_sample_gradients(model: PeftModel, model_dir: Path) -> torch.Tensor:
    """Each example's gradient of the summed loss over every trained parameter, one row per example."""
    for param in model.parameters():
        param.requires_grad_(False)
    trained = trained_parameters(model)
    for param in trained:
        param.requires_grad_(True)
    data = encoded_texts(model_dir, EXAMPLES)
    batch = data.batch(list(range(EXAMPLES)))
    gsm = MasterGradSampleModule(model, batch_first=True, loss_reduction="sum", strict=False)
    gsm.train()
    try:
        with autocast(model_precision(model), torch.device("cpu")):
            loss = SequenceClassificationTask().loss(gsm, batch)
        loss.backward()
        samples = [getattr(param, "grad_sample") for param in trained]  # noqa: B009
        assert all(sample.dtype == torch.float32 for sample in samples)
        return torch.cat([sample.reshape(EXAMPLES, -1) for sample in samples], dim=1)
    finally:
        gsm.to_standard_module()


def test_a_bfloat16_model_keeps_its_base_in_bfloat16_and_its_adapter_in_float32(tiny_model_dir: Path) -> None:
    model = build(tiny_model_dir, Precision.BFLOAT16)
    masters = {id(p) for p in trained_parameters(model)}
    assert masters
    for param in model.parameters():
        assert param.dtype == (torch.float32 if id(param) in masters else torch.bfloat16)
    assert model_precision(model) is Precision.BFLOAT16
    assert model_precision(build(tiny_model_dir, Precision.FLOAT32)) is Precision.FLOAT32


def test_bfloat16_per_sample_gradients_agree_with_float32_ones(tiny_model_dir: Path) -> None:
    reference = build(tiny_model_dir, Precision.FLOAT32)
    lowered = build(tiny_model_dir, Precision.BFLOAT16)
    state = with_nonzero_b(read_adapter(reference))
    write_adapter(reference, state)
    write_adapter(lowered, state)
    exact = per_sample_gradients(reference, tiny_model_dir)
    approximate = per_sample_gradients(lowered, tiny_model_dir)
    distance = (approximate - exact).norm(dim=1) / exact.norm(dim=1)
    assert float(distance.max()) <= PER_SAMPLE_TOLERANCE, distance


def test_a_trainer_refuses_a_model_built_in_another_precision(tiny_model_dir: Path) -> None:
    model = build(tiny_model_dir, Precision.BFLOAT16)
    with pytest.raises(ValueError, match="built in bfloat16"):
        make_trainer(model, encoded_texts(tiny_model_dir, 16))


def test_bfloat16_updates_are_float32_and_aggregate_exactly(tiny_model_dir: Path) -> None:
    model = build(tiny_model_dir, Precision.BFLOAT16)
    data = encoded_texts(tiny_model_dir, 24)
    state = with_nonzero_b(read_adapter(model))
    selection = dict.fromkeys(state.layer_names, FactorChoice.B)
    updates = []
    for silo in ("silo-00", "silo-01"):
        trainer = make_trainer(model, data, silo_id=silo, precision=Precision.BFLOAT16)
        update = trainer.train_round(0, state, selection, noise_multiplier=1.0).update
        tensors = [*update.head.values(), *(t for f in update.factors.values() for t in f.values())]
        assert all(tensor.dtype == torch.float32 for tensor in tensors)
        assert update.statistics is not None
        released = [v for layer in update.statistics.layers.values() for v in layer.values()]
        assert released
        assert all(math.isfinite(s.grad_sq) and math.isfinite(s.proj_sq) for s in released)
        assert math.isfinite(update.statistics.noise_variance)
        updates.append(update)
    result = aggregate(state, updates, selection, AggregationRule.EXACT)
    total = sum(u.weight for u in updates)
    for name in state.layer_names:
        mean_b = sum(u.weight / total * u.factors[name][Factor.B] for u in updates)
        assert isinstance(mean_b, torch.Tensor)
        assert torch.equal(result.state.layers[name].a, state.layers[name].a)
        torch.testing.assert_close(
            result.state.layers[name].product(),
            mean_b @ state.layers[name].a,
            rtol=FLOAT32_TOLERANCE,
            atol=FLOAT32_TOLERANCE,
        )


def test_a_bfloat16_model_evaluates_under_autocast_as_float32_does(tiny_model_dir: Path) -> None:
    """The coordinator's evaluation and a silo's released sums run a bfloat16 model without a dtype clash
    and agree with float32 within bfloat16's precision."""
    reference = build(tiny_model_dir, Precision.FLOAT32)
    lowered = build(tiny_model_dir, Precision.BFLOAT16)
    state = with_nonzero_b(read_adapter(reference))
    data = encoded_texts(tiny_model_dir, EXAMPLES)
    task = SequenceClassificationTask()
    exact, approximate = (
        evaluate(reference, state, data, task=task),
        evaluate(lowered, state, data, task=task),
    )
    assert approximate.loss == pytest.approx(exact.loss, rel=PER_SAMPLE_TOLERANCE)
    sums = [clipped_sums(m, state, data, task, EVALUATION_LOSS_BOUND) for m in (reference, lowered)]
    assert sums[1].loss_sum == pytest.approx(sums[0].loss_sum, rel=PER_SAMPLE_TOLERANCE)
