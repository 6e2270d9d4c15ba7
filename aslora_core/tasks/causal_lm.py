"""Causal-LM instruction tuning: LoRA factors only (no head), loss on response tokens, perplexity."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import torch
from peft import PeftModel
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer

from aslora_core.adapters import attach_lora
from aslora_core.config import LoraSettings, Precision, RecordFields, TaskName
from aslora_core.data import EncodedDataset
from aslora_core.data.instructions import (
    IGNORE_INDEX,
    InstructionRecords,
    encode_instructions,
    load_instructions,
)
from aslora_core.data.records import Records
from aslora_core.model_construction import load_pretrained
from aslora_core.precision import base_dtype
from aslora_core.tasks.base import Batch, BatchTerms, ExampleTerms, Task, TaskError, model_inputs

CAUSAL_LM_TYPE = "CAUSAL_LM"
"""peft's task type of a causal language model."""


class CausalLMTask(Task):
    """AutoModelForCausalLM with LoRA; each example's loss is its mean next-token cross-entropy over
    its response tokens (prompt tokens are labelled IGNORE_INDEX)."""

    name: ClassVar[TaskName] = TaskName.CAUSAL_LM
    reports_perplexity: ClassVar[bool] = True

    def build_model(
        self,
        model_path: Path,
        label_names: tuple[str, ...],
        lora: LoraSettings,
        seed: int,
        *,
        precision: Precision = Precision.FLOAT32,
    ) -> PeftModel:
        """The language model with LoRA on its targets and no head trained in full."""
        if label_names:
            raise TaskError(f"{self.name.value} has no class labels, the run names {len(label_names)}")
        base = load_pretrained(AutoModelForCausalLM, model_path, dtype=base_dtype(precision))
        return attach_lora(base, lora, seed, head_modules=(), task_type=CAUSAL_LM_TYPE)

    def load_records(self, path: Path, fields: RecordFields, label_names: tuple[str, ...] | None) -> Records:
        """Prompt/response pairs of a JSONL (or CSV/TSV) file."""
        if label_names:
            raise TaskError(f"{self.name.value} has no class labels")
        return load_instructions(path, prompt_field=fields.prompt_field, response_field=fields.response_field)

    def encode(self, records: Records, model_path: Path, max_length: int) -> EncodedDataset:
        """Prompt + response + EOS token ids, with labels on the response tokens only."""
        if not isinstance(records, InstructionRecords):
            raise TaskError(f"{self.name.value} encodes instruction records, not {type(records).__name__}")
        tokenizer = AutoTokenizer.from_pretrained(str(model_path), local_files_only=True)
        return encode_instructions(
            records,
            tokenizer,
            max_length,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )

    def example_losses(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """Each example's mean cross-entropy on its response tokens."""
        logits, targets = _next_token(model, batch)
        token_loss = nn.functional.cross_entropy(
            logits.transpose(1, 2), targets, ignore_index=IGNORE_INDEX, reduction="none"
        )
        counted = (targets != IGNORE_INDEX).sum(dim=1).clamp(min=1)
        return token_loss.sum(dim=1) / counted

    def batch_terms(self, model: nn.Module, batch: Batch) -> BatchTerms:
        """Summed cross-entropy and correct next-token predictions over the response tokens."""
        logits, targets = _next_token(model, batch)
        counted = targets != IGNORE_INDEX
        token_loss = nn.functional.cross_entropy(
            logits.transpose(1, 2), targets, ignore_index=IGNORE_INDEX, reduction="sum"
        )
        correct = (logits.argmax(dim=-1) == targets) & counted
        return BatchTerms(loss_sum=float(token_loss), correct=int(correct.sum()), units=int(counted.sum()))

    def example_terms(self, model: nn.Module, batch: Batch) -> ExampleTerms:
        """Each example's mean cross-entropy on its response tokens (its training loss) and the fraction
        of those tokens predicted right."""
        logits, targets = _next_token(model, batch)
        counted = targets != IGNORE_INDEX
        token_loss = nn.functional.cross_entropy(
            logits.transpose(1, 2), targets, ignore_index=IGNORE_INDEX, reduction="none"
        )
        tokens = counted.sum(dim=1).clamp(min=1).to(token_loss.dtype)
        correct = ((logits.argmax(dim=-1) == targets) & counted).sum(dim=1).to(token_loss.dtype)
        return ExampleTerms(loss=token_loss.sum(dim=1) / tokens, correct=correct / tokens)


def _next_token(model: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """The logits at every position but the last, and the token each should predict (labels shifted)."""
    logits = model(**model_inputs(batch)).logits[:, :-1]
    return logits, batch["labels"][:, 1:]
