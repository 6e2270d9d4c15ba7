"""Image classification: a ViT-style classifier whose head is trained in full, on folders or `.npz`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import torch
from peft import PeftModel
from torch import nn
from transformers import AutoConfig, AutoModelForImageClassification

from aslora_core.adapters import attach_lora
from aslora_core.config import LoraSettings, Precision, RecordFields, TaskName
from aslora_core.data import EncodedDataset
from aslora_core.data.images import LabelledImages, encode_images, load_images
from aslora_core.data.records import Records
from aslora_core.model_construction import load_pretrained
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
from aslora_core.tasks.sequence_classification import head_of

HEAD_CANDIDATES = ("classifier",)
"""The head's module name (ViT, DeiT, BEiT, ConvNeXt, Swin, ResNet all call it `classifier`)."""
PREPROCESSOR_FILE = "preprocessor_config.json"
DEFAULT_MEAN = 0.5
DEFAULT_STD = 0.5
"""ViT's normalisation, used when the model folder has no preprocessor config."""
DEFAULT_CHANNELS = 3


class ImageClassificationTask(Task):
    """AutoModelForImageClassification with LoRA and its head trained every round; cross-entropy."""

    name: ClassVar[TaskName] = TaskName.IMAGE_CLASSIFICATION

    def build_model(
        self,
        model_path: Path,
        label_names: tuple[str, ...],
        lora: LoraSettings,
        seed: int,
        *,
        precision: Precision = Precision.FLOAT32,
    ) -> PeftModel:
        """The classifier for `label_names`, its checkpoint head discarded, LoRA attached."""
        base = load_pretrained(
            AutoModelForImageClassification,
            model_path,
            dtype=base_dtype(precision),
            num_labels=len(label_names),
            ignore_mismatched_sizes=True,
        )
        return attach_lora(base, lora, seed, head_modules=head_of(base, HEAD_CANDIDATES), task_type=None)

    def load_records(self, path: Path, fields: RecordFields, label_names: tuple[str, ...] | None) -> Records:
        """Images of a class-per-folder tree or a `.npz` file (the column fields do not apply)."""
        return load_images(path, label_names)

    def encode(self, records: Records, model_path: Path, max_length: int) -> EncodedDataset:
        """Pixels resized to the model's image size and normalised as its preprocessor says."""
        if not isinstance(records, LabelledImages):
            raise TaskError(f"{self.name.value} encodes labelled images, not {type(records).__name__}")
        config = AutoConfig.from_pretrained(str(model_path), local_files_only=True)
        size = getattr(config, "image_size", None)
        if size is None:
            raise TaskError(f"{model_path}: the model config has no image_size")
        image_size = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        channels = int(getattr(config, "num_channels", DEFAULT_CHANNELS))
        mean, std = _normalisation(model_path, channels)
        return encode_images(records, image_size=image_size, channels=channels, mean=mean, std=std)

    def example_losses(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """Cross-entropy of each example's class logits."""
        logits = model(**model_inputs(batch)).logits
        return nn.functional.cross_entropy(logits, batch["labels"], reduction="none")

    def batch_terms(self, model: nn.Module, batch: Batch) -> BatchTerms:
        """Cross-entropy and correct predictions per image."""
        return classification_terms(model(**model_inputs(batch)).logits, batch["labels"])

    def example_terms(self, model: nn.Module, batch: Batch) -> ExampleTerms:
        """Each example's cross-entropy and whether it was classified right."""
        return classification_example_terms(model(**model_inputs(batch)).logits, batch["labels"])


def _normalisation(model_path: Path, channels: int) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation from the preprocessor config, or ViT's defaults."""
    mean, std = [DEFAULT_MEAN] * channels, [DEFAULT_STD] * channels
    file = model_path / PREPROCESSOR_FILE
    if file.is_file():
        settings = json.loads(file.read_text(encoding="utf-8"))
        mean = [float(v) for v in settings.get("image_mean", mean)]
        std = [float(v) for v in settings.get("image_std", std)]
    if len(mean) != channels or len(std) != channels:
        raise TaskError(f"{file}: image_mean and image_std need {channels} values")
    return mean, std
