"""A tiny Llama-style causal LM under the silo's compute settings: bfloat16 keeps its adapter, per-sample
gradients and releases in float32 and aggregates exactly; ghost clipping gives the hooks engine's step."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from peft import PeftModel

from aslora_core.adapters import lora_parameters, read_adapter, write_adapter
from aslora_core.aggregation import aggregate
from aslora_core.aggregation_rule import AggregationRule
from aslora_core.config import ClippingEngine, ClippingMode, LoraSettings, Precision, RecordFields
from aslora_core.data import EncodedDataset
from aslora_core.factor_choice import Factor, FactorChoice
from aslora_core.factors import AdapterState, SiloUpdate
from aslora_core.precision import autocast, model_precision
from aslora_core.tasks.causal_lm import CausalLMTask
from aslora_core.training.grad_samples import MasterGradSampleModule
from tests.tasks.builders import save_tiny_llama, write_instructions
from tests.training.helpers import MAX_LENGTH, make_trainer, with_nonzero_b

PER_SAMPLE_TOLERANCE = 2e-2
"""Relative L2 distance allowed between an example's bfloat16 and float32 per-sample gradients."""
ENGINE_TOLERANCE = 1e-5
"""Relative distance allowed between the two clipping engines' updates (float32 sums in another order)."""
AGGREGATION_TOLERANCE = 1e-6
CLIP_NORM = 0.05
"""Small enough that most examples are clipped, so the engines' clipping itself is compared."""
EXAMPLES = 8
RECORDS = 24
LORA = LoraSettings(rank=4, alpha=8)


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama (2 layers, 32 wide) with its word-level tokenizer."""
    return save_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="module")
def llama_data(llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> EncodedDataset:
    """Prompt/response records encoded for the tiny Llama, labels on the responses only."""
    path = write_instructions(tmp_path_factory.mktemp("instructions") / "train.jsonl", RECORDS)
    task = CausalLMTask()
    return task.encode(task.load_records(path, RecordFields(), None), llama_dir, MAX_LENGTH)


def build(model_dir: Path, precision: Precision) -> PeftModel:
    """The tiny Llama with LoRA on q, k, v and o, its base in `precision`."""
    return CausalLMTask().build_model(model_dir, (), LORA, seed=0, precision=precision)


def factor_parameters(model: PeftModel) -> list[torch.nn.Parameter]:
    """The LoRA factors in a fixed order (a causal LM trains no head)."""
    return [p for layer in lora_parameters(model).values() for p in layer.values()]


def per_sample_gradients(model: PeftModel, data: EncodedDataset) -> torch.Tensor:
    """Each example's gradient of its loss over every LoRA factor, one row per example."""
    for param in model.parameters():
        param.requires_grad_(False)
    trained = factor_parameters(model)
    for param in trained:
        param.requires_grad_(True)
    gsm = MasterGradSampleModule(model, batch_first=True, loss_reduction="sum", strict=False)
    gsm.train()
    try:
        with autocast(model_precision(model), torch.device("cpu")):
            loss = CausalLMTask().loss(gsm, data.batch(list(range(EXAMPLES))))
        loss.backward()
        samples = [getattr(param, "grad_sample") for param in trained]  # noqa: B009
        assert all(sample.dtype == torch.float32 for sample in samples)
        return torch.cat([sample.reshape(EXAMPLES, -1) for sample in samples], dim=1)
    finally:
        gsm.to_standard_module()


def step(update: SiloUpdate, start: AdapterState) -> torch.Tensor:
    """What the round moved the B factors by from `start`, as one vector in layer order."""
    return torch.cat(
        [(update.factors[name][Factor.B] - start.layers[name].b).flatten() for name in sorted(update.factors)]
    )


def train(
    model: PeftModel,
    data: EncodedDataset,
    *,
    precision: Precision = Precision.FLOAT32,
    engine: ClippingEngine = ClippingEngine.HOOKS,
    clipping: ClippingMode = ClippingMode.TRAINED,
    checkpointing: bool = False,
    silo_id: str = "silo-00",
) -> SiloUpdate:
    """One seeded DP round (sigma 1) of the B factors from the model's adapter with B set non-zero."""
    state = with_nonzero_b(read_adapter(model))
    trainer = make_trainer(
        model,
        data,
        task=CausalLMTask(),
        clip_norm=CLIP_NORM,
        clipping=clipping,
        precision=precision,
        clipping_engine=engine,
        gradient_checkpointing=checkpointing,
        silo_id=silo_id,
    )
    selection = dict.fromkeys(state.layer_names, FactorChoice.B)
    return trainer.train_round(0, state, selection, noise_multiplier=1.0).update


def test_a_bfloat16_llama_keeps_its_base_in_bfloat16_and_its_factors_in_float32(llama_dir: Path) -> None:
    model = build(llama_dir, Precision.BFLOAT16)
    factors = {id(p) for p in factor_parameters(model)}
    assert len(factors) == 2 * 4 * 2  # A and B of q, k, v and o in each of the 2 layers
    for param in model.parameters():
        assert param.dtype == (torch.float32 if id(param) in factors else torch.bfloat16)


def test_bfloat16_llama_per_sample_gradients_agree_with_float32_ones(
    llama_dir: Path, llama_data: EncodedDataset
) -> None:
    reference = build(llama_dir, Precision.FLOAT32)
    lowered = build(llama_dir, Precision.BFLOAT16)
    state = with_nonzero_b(read_adapter(reference))
    write_adapter(reference, state)
    write_adapter(lowered, state)
    exact = per_sample_gradients(reference, llama_data)
    approximate = per_sample_gradients(lowered, llama_data)
    distance = (approximate - exact).norm(dim=1) / exact.norm(dim=1)
    assert float(distance.max()) <= PER_SAMPLE_TOLERANCE, distance


def test_bfloat16_llama_updates_are_float32_and_aggregate_exactly(
    llama_dir: Path, llama_data: EncodedDataset
) -> None:
    model = build(llama_dir, Precision.BFLOAT16)
    state = with_nonzero_b(read_adapter(model))
    silos = ("silo-00", "silo-01")
    updates = [train(model, llama_data, precision=Precision.BFLOAT16, silo_id=silo) for silo in silos]
    for update in updates:
        assert not update.head
        assert all(t.dtype == torch.float32 for f in update.factors.values() for t in f.values())
        assert update.statistics is not None
        released = [v for layer in update.statistics.layers.values() for v in layer.values()]
        assert len(released) == len(state.layer_names)
        assert all(math.isfinite(s.grad_sq) and math.isfinite(s.proj_sq) for s in released)
    selection = dict.fromkeys(state.layer_names, FactorChoice.B)
    result = aggregate(state, updates, selection, AggregationRule.EXACT)
    total = sum(u.weight for u in updates)
    for name in state.layer_names:
        mean_b = sum(u.weight / total * u.factors[name][Factor.B] for u in updates)
        assert isinstance(mean_b, torch.Tensor)
        torch.testing.assert_close(
            result.state.layers[name].product(),
            mean_b @ state.layers[name].a,
            rtol=AGGREGATION_TOLERANCE,
            atol=AGGREGATION_TOLERANCE,
        )


@pytest.mark.parametrize(
    ("clipping", "checkpointing"),
    [(ClippingMode.TRAINED, False), (ClippingMode.JOINT, False), (ClippingMode.TRAINED, True)],
)
def test_ghost_clipping_gives_the_hooks_engines_llama_step(
    llama_dir: Path, llama_data: EncodedDataset, clipping: ClippingMode, checkpointing: bool
) -> None:
    """Seeded noise, float32 (ghost clipping with bfloat16 is refused): the same clipped, noised step,
    with or without checkpointing on the ghost side."""
    model = build(llama_dir, Precision.FLOAT32)
    start = with_nonzero_b(read_adapter(model))
    hooks = step(train(model, llama_data, clipping=clipping), start)
    ghost_update = train(
        model, llama_data, engine=ClippingEngine.GHOST, clipping=clipping, checkpointing=checkpointing
    )
    ghost = step(ghost_update, start)
    assert float(hooks.norm()) > 0.0
    assert float((ghost - hooks).norm() / hooks.norm()) <= ENGINE_TOLERANCE
