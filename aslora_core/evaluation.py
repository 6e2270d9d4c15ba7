"""Evaluation of a global adapter on data the evaluator may see (never a silo's private set)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from peft import PeftModel
from torch import nn

from aslora_core.adapters import write_adapter
from aslora_core.data import EncodedDataset
from aslora_core.factors import AdapterState

EVAL_BATCH_SIZE = 128


@dataclass(frozen=True)
class Evaluation:
    """Mean cross-entropy and accuracy of a model on an evaluation set."""

    loss: float
    accuracy: float
    examples: int


@torch.no_grad()
def evaluate(model: PeftModel, state: AdapterState, data: EncodedDataset, device: str = "cpu") -> Evaluation:
    """Load `state` into `model` and measure it on `data`."""
    write_adapter(model, state)
    model.to(device)
    model.eval()
    total_loss = 0.0
    correct = 0
    for start in range(0, len(data), EVAL_BATCH_SIZE):
        indices = list(range(start, min(start + EVAL_BATCH_SIZE, len(data))))
        batch = {k: v.to(device) for k, v in data.batch(indices).items()}
        labels = batch.pop("labels")
        logits = model(**batch).logits
        total_loss += float(nn.functional.cross_entropy(logits, labels, reduction="sum"))
        correct += int((logits.argmax(dim=-1) == labels).sum())
    count = len(data)
    return Evaluation(loss=total_loss / count, accuracy=correct / count, examples=count)
