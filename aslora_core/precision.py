"""What a compute precision means for a model: its frozen weights' dtype and the autocast it runs under."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch
from torch import nn

from aslora_core.config import Precision

MASTER_DTYPE = torch.float32
"""The dtype of everything DP-SGD touches: the LoRA factors, the head, per-sample gradients, clipping,
noise, statistics and the released update, whatever the base model computes in."""
BASE_DTYPES = {Precision.FLOAT32: torch.float32, Precision.BFLOAT16: torch.bfloat16}


def base_dtype(precision: Precision) -> torch.dtype:
    """The dtype the frozen base model is loaded and kept in."""
    return BASE_DTYPES[precision]


def model_precision(model: nn.Module) -> Precision:
    """BFLOAT16 when any of the model's parameters is bfloat16 (its frozen base), else FLOAT32."""
    if any(param.dtype == torch.bfloat16 for param in model.parameters()):
        return Precision.BFLOAT16
    return Precision.FLOAT32


def autocast(precision: Precision, device: torch.device) -> AbstractContextManager[object]:
    """The context forward passes run in: bfloat16 autocast (float32 master weights meet bfloat16 base
    weights), or nothing for float32. Backward passes follow the dtypes autocast chose."""
    if precision is Precision.FLOAT32:
        return nullcontext()
    return torch.autocast(device.type, dtype=BASE_DTYPES[precision])
