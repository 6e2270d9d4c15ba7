"""Builders shared by the trainer tests: a tiny LoRA model and a small encoded text set."""

from __future__ import annotations

from pathlib import Path

import torch
from peft import PeftModel
from transformers import AutoTokenizer, BertForSequenceClassification

from aslora_core.adapters import attach_lora
from aslora_core.config import (
    ClippingEngine,
    ClippingMode,
    ComputeSettings,
    LoraSettings,
    OptimizerKind,
    Precision,
    PrivacySettings,
    TrainingSettings,
)
from aslora_core.data import EncodedDataset, LabelledTexts, TextExample, encode
from aslora_core.factors import AdapterState, LayerFactors
from aslora_core.precision import base_dtype
from aslora_core.privacy import PrivacyAccountant
from aslora_core.tasks import Task
from aslora_core.tasks.sequence_classification import SequenceClassificationTask
from aslora_core.training import LocalTrainer

WORDS = ("good", "bad", "great", "awful", "fine", "poor", "superb", "dull")
MAX_LENGTH = 16
PHYSICAL_BATCH_SIZE = 4


def small_texts(count: int) -> LabelledTexts:
    """Short two-class texts whose label follows their first word."""
    examples = []
    for index in range(count):
        word = WORDS[index % len(WORDS)]
        examples.append(TextExample(text=f"{word} film number {index}", text_pair=None, label=index % 2))
    return LabelledTexts(examples=tuple(examples), label_names=("negative", "positive"))


def tiny_lora_model(model_dir: Path, seed: int = 0, precision: Precision = Precision.FLOAT32) -> PeftModel:
    """The tiny BERT of the fixture, its base in `precision`, with LoRA rank 4 on query and value."""
    base = BertForSequenceClassification.from_pretrained(
        str(model_dir), num_labels=2, dtype=base_dtype(precision)
    )
    return attach_lora(base, LoraSettings(rank=4, alpha=8), seed)


def with_nonzero_b(state: AdapterState, value: float = 0.05) -> AdapterState:
    """`state` with every B set to `value`, so that both factors receive gradient (B starts at zero)."""
    return AdapterState(
        layers={k: LayerFactors(a=v.a, b=torch.full_like(v.b, value)) for k, v in state.layers.items()},
        head=state.head,
        scaling=state.scaling,
    )


def encoded_texts(model_dir: Path, count: int) -> EncodedDataset:
    """`small_texts(count)` through the model's tokenizer."""
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    return encode(small_texts(count), tokenizer, MAX_LENGTH)


def make_trainer(
    model: PeftModel,
    data: EncodedDataset,
    *,
    clipping: ClippingMode = ClippingMode.TRAINED,
    secure: bool = False,
    batch_size: int = 8,
    local_steps: int = 3,
    lr: float = 0.5,
    head_lr: float | None = None,
    clip_norm: float = 1.0,
    head_clip_norm: float | None = None,
    silo_id: str = "silo-00",
    optimizer: OptimizerKind = OptimizerKind.SGD,
    precision: Precision = Precision.FLOAT32,
    clipping_engine: ClippingEngine = ClippingEngine.HOOKS,
    gradient_checkpointing: bool = False,
    task: Task | None = None,
) -> LocalTrainer:
    """A LocalTrainer over `data` with small, test-friendly settings (sequence classification unless
    `task` says otherwise)."""
    return LocalTrainer(
        silo_id=silo_id,
        task=task or SequenceClassificationTask(),
        model=model,
        data=data,
        training=TrainingSettings(
            local_steps=local_steps, batch_size=batch_size, lr=lr, head_lr=head_lr, optimizer=optimizer
        ),
        compute=ComputeSettings(
            physical_batch_size=PHYSICAL_BATCH_SIZE,
            max_length=MAX_LENGTH,
            precision=precision,
            clipping_engine=clipping_engine,
            gradient_checkpointing=gradient_checkpointing,
        ),
        privacy=PrivacySettings(
            clip_norm=clip_norm,
            head_clip_norm=head_clip_norm,
            noise_multiplier=1.0,
            test_mode=not secure,
            clipping=clipping,
        ),
        accountant=PrivacyAccountant(),
        seed=7,
    )
