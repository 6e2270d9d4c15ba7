"""Whether `torch.nn.init` still has torch's own functions (transformers swaps them while it loads)."""

from __future__ import annotations

import torch

CHECKED_FUNCTIONS = ("uniform_", "normal_", "kaiming_uniform_", "zeros_", "constant_")
"""The `torch.nn.init` functions that LoRA factors and heads are initialised with."""


def swapped_init_functions() -> list[str]:
    """The checked `torch.nn.init` functions that are not torch's own at this moment."""
    return [name for name in CHECKED_FUNCTIONS if getattr(torch.nn.init, name).__module__ != "torch.nn.init"]
