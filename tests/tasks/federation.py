"""A 2-silo, 2-round DP federation of any task, and the check that its PEFT export loads and agrees."""

from __future__ import annotations

import time
from pathlib import Path

import torch
from peft import PeftModel
from torch import nn

from aslora_core.adapters import export_adapter, write_adapter
from aslora_core.config import (
    ComputeSettings,
    DataSettings,
    FederationSettings,
    LoraSettings,
    OptimizerKind,
    PartitionSettings,
    PrivacySettings,
    RecordFields,
    SimulationSettings,
    TaskName,
    TrainingSettings,
)
from aslora_core.results import RunResult
from aslora_core.simulation import Federation, build_federation, run_federation

SILOS = 2
ROUNDS = 2
RANK = 4
ALPHA = 8
SIGMA = 1.0
"""Real DP-SGD noise (seeded, deterministic mode): sigma 1 at clip norm 1."""
COMPARED_EXAMPLES = 8
OUTPUT_TOLERANCE = 1e-5

TASK_MAX_LENGTH = 16


def task_settings(
    task: TaskName,
    model_dir: Path,
    train_path: Path,
    *,
    lr: float,
    head_lr: float | None = None,
    batch_size: int = 64,
    max_train_examples: int | None = None,
    dirichlet_alpha: float | None = None,
    text_column: str = RecordFields.text_column,
) -> SimulationSettings:
    """Two silos, two rounds of three DP-SGD steps, LoRA rank 4 on the architecture's default targets."""
    return SimulationSettings(
        model_path=str(model_dir),
        task=task,
        data=DataSettings(
            train_path=str(train_path),
            fields=RecordFields(text_column=text_column),
            max_train_examples=max_train_examples,
            max_eval_examples=128,
        ),
        partition=PartitionSettings(silos=SILOS, dirichlet_alpha=dirichlet_alpha),
        lora=LoraSettings(rank=RANK, alpha=ALPHA),
        privacy=PrivacySettings(noise_multiplier=SIGMA, test_mode=True),
        training=TrainingSettings(
            local_steps=3,
            batch_size=batch_size,
            lr=lr,
            head_lr=head_lr,
            optimizer=OptimizerKind.SGD,
        ),
        compute=ComputeSettings(physical_batch_size=batch_size, max_length=TASK_MAX_LENGTH),
        federation=FederationSettings(policy="aslora", rounds=ROUNDS, seed=1),
    )


def run(settings: SimulationSettings) -> tuple[Federation, RunResult]:
    """Build the federation and run its rounds; the engine then holds the final global adapter."""
    federation = build_federation(settings)
    return federation, run_federation(federation, settings, time.perf_counter())


def assert_learns(result: RunResult) -> None:
    """Every round ran with both silos, and the evaluation loss fell from the initial adapter's."""
    assert [record.round for record in result.rounds] == list(range(ROUNDS))
    assert all(len(record.silos) == SILOS for record in result.rounds)
    assert result.initial_loss is not None
    losses = [result.initial_loss, *(record.loss for record in result.rounds)]
    assert losses[-1] < losses[0], losses
    assert result.epsilon > 0


@torch.no_grad()
def assert_export_matches(federation: Federation, base: nn.Module, out_dir: Path) -> None:
    """The exported PEFT adapter, loaded onto a freshly read base model, gives the coordinator's outputs."""
    state = federation.engine.state
    export_adapter(federation.model, state, out_dir)
    loaded = PeftModel.from_pretrained(base, str(out_dir)).eval()
    write_adapter(federation.model, state)
    federation.model.eval()
    batch = federation.eval_data.batch(list(range(COMPARED_EXAMPLES)))
    inputs = {name: tensor for name, tensor in batch.items() if name != "labels"}
    expected = federation.model(**inputs).logits
    torch.testing.assert_close(loaded(**inputs).logits, expected, rtol=0, atol=OUTPUT_TOLERANCE)
