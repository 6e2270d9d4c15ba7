"""Evaluation of a global adapter on data the evaluator may see (never a silo's private set)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from peft import PeftModel

from aslora_core.adapters import write_adapter
from aslora_core.data import EncodedDataset
from aslora_core.factors import AdapterState
from aslora_core.precision import autocast, model_precision
from aslora_core.tasks import Task

EVAL_BATCH_SIZE = 128


@dataclass(frozen=True)
class Evaluation:
    """Mean loss and accuracy of a model on an evaluation set, per example (classification) or per
    response token (causal LM, which also reports the perplexity)."""

    loss: float
    accuracy: float
    examples: int
    perplexity: float | None = None


@torch.no_grad()
def evaluate(
    model: PeftModel, state: AdapterState, data: EncodedDataset, device: str = "cpu", *, task: Task
) -> Evaluation:
    """Load `state` into `model` and measure it on `data` by `task`'s loss and accuracy."""
    write_adapter(model, state)
    model.to(device)
    model.eval()
    loss_sum = 0.0
    correct = 0
    units = 0
    for start in range(0, len(data), EVAL_BATCH_SIZE):
        indices = list(range(start, min(start + EVAL_BATCH_SIZE, len(data))))
        batch = {k: v.to(device) for k, v in data.batch(indices).items()}
        with autocast(model_precision(model), torch.device(device)):
            terms = task.batch_terms(model, batch)
        loss_sum += terms.loss_sum
        correct += terms.correct
        units += terms.units
    loss = loss_sum / max(units, 1)
    return Evaluation(
        loss=loss,
        accuracy=correct / max(units, 1),
        examples=len(data),
        perplexity=math.exp(loss) if task.reports_perplexity else None,
    )
