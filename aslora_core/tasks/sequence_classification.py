"""Sequence classification: a text (or text pair) classifier whose head is trained in full, by accuracy."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import torch
from peft import PeftModel
from torch import nn
from transformers import AutoTokenizer, PreTrainedModel

from aslora_core.adapters import HEAD_MODULES, SEQUENCE_CLASSIFICATION_TYPE, attach_lora, load_base_classifier
from aslora_core.config import LoraSettings, Precision, RecordFields, TaskName
from aslora_core.data import EncodedDataset, LabelledTexts, encode, load_table
from aslora_core.data.records import Records
from aslora_core.head_warm_start import warm_start_head
from aslora_core.precision import base_dtype
from aslora_core.tasks.base import (
    Batch,
    BatchTerms,
    ExampleTerms,
    Task,
    TaskError,
    classification_example_terms,
    classification_terms,
    model_inputs,
)

HEAD_CANDIDATES = (*HEAD_MODULES, "score")
"""The head's module name: `classifier` (BERT, RoBERTa) or `score` (GPT-2, Llama)."""


class SequenceClassificationTask(Task):
    """A text classifier (the checkpoint's head, or mean pooling: `LoraSettings.head_pooling`) with LoRA
    and its head trained every round; cross-entropy."""

    name: ClassVar[TaskName] = TaskName.SEQUENCE_CLASSIFICATION

    def build_model(
        self,
        model_path: Path,
        label_names: tuple[str, ...],
        lora: LoraSettings,
        seed: int,
        *,
        precision: Precision = Precision.FLOAT32,
    ) -> PeftModel:
        """The classifier for `label_names`, its checkpoint head discarded, LoRA attached; the head
        warm-started from `lora.head_label_texts` when there are any."""
        base = load_base_classifier(
            model_path, len(label_names), lora.head_pooling, dtype=base_dtype(precision)
        )
        model = attach_lora(
            base,
            lora,
            seed,
            head_modules=head_of(base, HEAD_CANDIDATES),
            # A mean-pooled classifier is the project's own module: peft wraps it as a plain model.
            task_type=SEQUENCE_CLASSIFICATION_TYPE if isinstance(base, PreTrainedModel) else None,
        )
        if lora.head_label_texts:
            warm_start_head(model, lora.head_label_texts, model_path)
        return model

    def load_records(self, path: Path, fields: RecordFields, label_names: tuple[str, ...] | None) -> Records:
        """Texts and labels of a CSV, TSV or JSONL file."""
        return load_table(
            path,
            text_column=fields.text_column,
            text_pair_column=fields.text_pair_column,
            label_column=fields.label_column,
            label_names=label_names,
        )

    def encode(self, records: Records, model_path: Path, max_length: int) -> EncodedDataset:
        """Token ids padded to `max_length` by the model folder's tokenizer."""
        if not isinstance(records, LabelledTexts):
            raise TaskError(f"{self.name.value} encodes labelled texts, not {type(records).__name__}")
        tokenizer = AutoTokenizer.from_pretrained(str(model_path), local_files_only=True)
        return encode(records, tokenizer, max_length)

    def example_losses(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """Cross-entropy of each example's class logits."""
        logits = model(**model_inputs(batch)).logits
        return nn.functional.cross_entropy(logits, batch["labels"], reduction="none")

    def batch_terms(self, model: nn.Module, batch: Batch) -> BatchTerms:
        """Cross-entropy and correct predictions per example."""
        return classification_terms(model(**model_inputs(batch)).logits, batch["labels"])

    def example_terms(self, model: nn.Module, batch: Batch) -> ExampleTerms:
        """Each example's cross-entropy and whether it was classified right."""
        return classification_example_terms(model(**model_inputs(batch)).logits, batch["labels"])


def head_of(base: nn.Module, candidates: tuple[str, ...]) -> tuple[str, ...]:
    """The first of `candidates` that is a top-level module of `base`: the head trained in full."""
    children = dict(base.named_children())
    for name in candidates:
        if name in children:
            return (name,)
    raise TaskError(f"the model has no head module named any of {list(candidates)}")
