"""Gradient checkpointing of the transformer inside a LoRA model, when a silo's compute settings ask."""

from __future__ import annotations

from torch import nn
from transformers import PreTrainedModel

from aslora_core.config import ConfigError

CHECKPOINTING_OPTIONS = {"use_reentrant": False}
"""Non-reentrant checkpointing: the frozen embeddings' output needs no gradient for the LoRA factors
inside a segment to get theirs, and autocast is replayed as it was."""


def enable_gradient_checkpointing(model: nn.Module) -> None:
    """Checkpoint every block of the outermost transformers model in `model` (it applies to all of them)
    during training; ConfigError when no model inside supports it."""
    for module in model.modules():
        if isinstance(module, PreTrainedModel) and module.supports_gradient_checkpointing:
            module.gradient_checkpointing_enable(gradient_checkpointing_kwargs=CHECKPOINTING_OPTIONS)
            return
    raise ConfigError(
        f"[training] gradient_checkpointing: the {type(model).__name__} model has no transformer that "
        "supports it; set gradient_checkpointing = false"
    )
