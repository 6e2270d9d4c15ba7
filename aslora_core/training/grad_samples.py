"""Opacus' hooks for both clipping engines: linear layers' per-sample gradients in float32 whatever dtype
autocast ran the layer in, and activations captured once per example even under gradient checkpointing."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from opacus import GradSampleModule, GradSampleModuleFastGradientClipping
from torch import nn

from aslora_core.precision import MASTER_DTYPE

NO_GRAPH_TASK = -1
"""What torch reports as the current autograd graph task outside any backward pass."""


def master_linear_grad_sample(
    layer: nn.Linear, activations: list[torch.Tensor], backprops: torch.Tensor
) -> dict[torch.Tensor, torch.Tensor]:
    """Each example's gradient of the layer's weight (and bias) in float32: the sum over its positions of
    output gradient times input."""
    inputs = activations[0].to(MASTER_DTYPE)
    outputs = backprops.to(MASTER_DTYPE)
    samples: dict[torch.Tensor, torch.Tensor] = {}
    if layer.weight.requires_grad:
        samples[layer.weight] = torch.einsum("n...i,n...j->nij", outputs, inputs)
    if layer.bias is not None and layer.bias.requires_grad:
        samples[layer.bias] = torch.einsum("n...k->nk", outputs)
    return samples


def recomputing() -> bool:
    """Whether a forward pass runs inside a backward pass: gradient checkpointing recomputing a segment
    whose activations it did not keep (the trainer runs no other forward pass there)."""
    return bool(torch._C._current_graph_task_id() != NO_GRAPH_TASK)


class MasterGradSampleModule(GradSampleModule):  # type: ignore[misc]
    """A GradSampleModule whose linear layers' per-sample gradients are float32 (the LoRA factors' and a
    linear head's); other layers keep Opacus' own samplers and are widened before clipping. A segment that
    gradient checkpointing recomputes is not captured again: its activations from the forward pass are
    the same, and a second capture would break Opacus' count of forward passes per backward pass."""

    GRAD_SAMPLERS: ClassVar[dict[type, Any]] = {
        **GradSampleModule.GRAD_SAMPLERS,
        nn.Linear: master_linear_grad_sample,
    }

    def capture_activations_hook(self, module: nn.Module, *args: Any) -> None:
        """Opacus' capture, skipped while a checkpointed segment is recomputed."""
        if not recomputing():
            super().capture_activations_hook(module, *args)


class GhostGradSampleModule(GradSampleModuleFastGradientClipping):  # type: ignore[misc]
    """Opacus' ghost-clipping hooks (per-parameter per-sample gradient norms), capturing activations once
    under gradient checkpointing as `MasterGradSampleModule` does."""

    def capture_activations_hook(self, module: nn.Module, *args: Any) -> None:
        """Opacus' capture, skipped while a checkpointed segment is recomputed."""
        if not recomputing():
            super().capture_activations_hook(module, *args)
