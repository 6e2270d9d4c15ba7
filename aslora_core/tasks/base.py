"""What a fine-tuning task is: how its model is built, its data read and encoded, its loss and metrics."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
from peft import PeftModel
from torch import nn

from aslora_core.config import LoraSettings, Precision, RecordFields, TaskName
from aslora_core.data import EncodedDataset
from aslora_core.data.encoding import LABELS_KEY
from aslora_core.data.records import Records
from aslora_core.mistakes import FixableError

Batch = Mapping[str, torch.Tensor]
"""Model inputs and `labels` of some examples, as `EncodedDataset.batch` returns them."""


class TaskError(FixableError, ValueError):
    """A task cannot run with this model or these records."""

    fix = "give the task a model and data of its kind (docs/tasks.md)"


@dataclass(frozen=True)
class BatchTerms:
    """A batch's contribution to an evaluation: summed loss, correct predictions, and how many units
    (examples, or predicted tokens for a language model) both are counted over."""

    loss_sum: float
    correct: int
    units: int


@dataclass(frozen=True)
class ExampleTerms:
    """Each example's own evaluation terms: its loss, and how much of it was predicted correctly (0 or 1
    for a class, the fraction of response tokens for a language model): one record moves each by itself
    alone."""

    loss: torch.Tensor
    correct: torch.Tensor


class Task(ABC):
    """One kind of supervised fine-tuning, the same on the coordinator and on every silo."""

    name: ClassVar[TaskName]
    reports_perplexity: ClassVar[bool] = False
    """Whether its evaluation loss is a mean per-token loss, whose exponential is the perplexity."""

    @abstractmethod
    def build_model(
        self,
        model_path: Path,
        label_names: tuple[str, ...],
        lora: LoraSettings,
        seed: int,
        *,
        precision: Precision = Precision.FLOAT32,
    ) -> PeftModel:
        """The base model from a local folder (never a hub), its weights in `precision`'s base dtype,
        with LoRA attached from `seed` (the factors and any head in float32)."""

    @abstractmethod
    def load_records(self, path: Path, fields: RecordFields, label_names: tuple[str, ...] | None) -> Records:
        """The examples of a local data file or folder (classes numbered by `label_names` when given)."""

    @abstractmethod
    def encode(self, records: Records, model_path: Path, max_length: int) -> EncodedDataset:
        """Model inputs and `labels` of every example, as the model in `model_path` reads them."""

    @abstractmethod
    def example_losses(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """Each example's training loss, in batch order, with gradients (each depends on that example
        alone, as per-sample gradients require)."""

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """The training loss of `batch`, summed over its examples."""
        return self.example_losses(model, batch).sum()

    @abstractmethod
    def batch_terms(self, model: nn.Module, batch: Batch) -> BatchTerms:
        """What `batch` adds to an evaluation (called without gradients)."""

    @abstractmethod
    def example_terms(self, model: nn.Module, batch: Batch) -> ExampleTerms:
        """Each example's loss and correct share, in batch order (called without gradients)."""


def model_inputs(batch: Batch) -> dict[str, torch.Tensor]:
    """The batch without its labels (a Hugging Face model given labels would compute its own loss)."""
    return {name: tensor for name, tensor in batch.items() if name != LABELS_KEY}


def classification_example_terms(logits: torch.Tensor, labels: torch.Tensor) -> ExampleTerms:
    """Each example's cross-entropy, and 1 where its top-1 prediction is right (else 0)."""
    return ExampleTerms(
        loss=nn.functional.cross_entropy(logits, labels, reduction="none"),
        correct=(logits.argmax(dim=-1) == labels).to(logits.dtype),
    )


def classification_terms(logits: torch.Tensor, labels: torch.Tensor) -> BatchTerms:
    """Summed cross-entropy and correct top-1 predictions of class logits."""
    return BatchTerms(
        loss_sum=float(nn.functional.cross_entropy(logits, labels, reduction="sum")),
        correct=int((logits.argmax(dim=-1) == labels).sum()),
        units=int(labels.numel()),
    )
