"""Before DP training: every trainable layer must be one whose per-sample gradients Opacus computes."""

from __future__ import annotations

from opacus import GradSampleModule
from opacus.utils.module_utils import trainable_modules
from torch import nn

UNSUPPORTED_BY_FUNCTORCH = (nn.EmbeddingBag,)
"""Layers Opacus' functorch fallback refuses even without buffers."""


class UnsupportedLayerError(ValueError):
    """A trainable layer cannot be trained privately by Opacus (e.g. it keeps buffers, like BatchNorm)."""


def require_private_layers(model: nn.Module) -> None:
    """Raise UnsupportedLayerError naming the first trainable layer Opacus' validator rejects."""
    for name, module in trainable_modules(model):
        problems = GradSampleModule.validate(module, strict=False)
        if problems or isinstance(module, UNSUPPORTED_BY_FUNCTORCH):
            raise UnsupportedLayerError(
                f"the trainable layer {name or '<model>'} ({type(module).__name__}) cannot be trained with "
                "DP-SGD: Opacus cannot compute its per-sample gradients privately (layers with buffers, "
                "such as batch norm, mix examples); adapt or train other modules"
            )
