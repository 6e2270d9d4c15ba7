"""A silo's evaluation of a global adapter on its own held-out records, released as one Gaussian mechanism
on (sum of per-example losses clipped at L, correct count, example count)."""

from __future__ import annotations

import torch
from peft import PeftModel

from aslora_core.adapters import write_adapter
from aslora_core.data import EncodedDataset
from aslora_core.evaluation import EVAL_BATCH_SIZE
from aslora_core.factors import AdapterState
from aslora_core.federated_evaluation import RELEASED_SUMS, EvaluationSums, release_sensitivity
from aslora_core.precision import autocast, model_precision
from aslora_core.privacy import NoiseSource
from aslora_core.tasks import Task


@torch.no_grad()
def clipped_sums(
    model: PeftModel,
    state: AdapterState,
    data: EncodedDataset,
    task: Task,
    loss_bound: float,
    *,
    device: str = "cpu",
) -> EvaluationSums:
    """Load `state` into `model` and sum, over `data`, each example's loss clipped to [0, loss_bound] and
    its correct share, exactly (before any noise)."""
    release_sensitivity(loss_bound)  # validates the bound
    write_adapter(model, state)
    model.to(device)
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64)
    correct = torch.zeros((), dtype=torch.float64)
    for start in range(0, len(data), EVAL_BATCH_SIZE):
        indices = list(range(start, min(start + EVAL_BATCH_SIZE, len(data))))
        batch = {k: v.to(device) for k, v in data.batch(indices).items()}
        with autocast(model_precision(model), torch.device(device)):
            terms = task.example_terms(model, batch)
        loss_sum += terms.loss.double().clamp(0.0, loss_bound).sum().cpu()
        correct += terms.correct.double().clamp(0.0, 1.0).sum().cpu()
    return EvaluationSums(loss_sum=float(loss_sum), correct=float(correct), examples=float(len(data)))


def noised(
    sums: EvaluationSums, loss_bound: float, noise_multiplier: float, noise: NoiseSource
) -> EvaluationSums:
    """The Gaussian mechanism: each sum plus independent N(0, (sigma * sqrt(L^2 + 2))^2) noise."""
    std = noise_multiplier * release_sensitivity(loss_bound)
    draws = noise.normal((RELEASED_SUMS,), std, torch.float64, torch.device("cpu")).tolist()
    return EvaluationSums(
        loss_sum=sums.loss_sum + draws[0], correct=sums.correct + draws[1], examples=sums.examples + draws[2]
    )
