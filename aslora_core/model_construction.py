"""Building models: every checkpoint load goes through `load_pretrained`, under one process-wide lock.

For the length of a `from_pretrained` call, transformers swaps the functions of `torch.nn.init` for its
own (or for no-ops), and puts back what it found when the call ends. Two calls in different threads can
each find the other's swap, and the functions stay swapped for the rest of the process: every later
`reset_parameters` is silently skipped, so a LoRA factor or a head seeded afterwards starts from whatever
memory held (seen in CI: a run in threads no longer matched the same seed run in a fresh process). Every
load and every seeded initialisation in this package holds the lock, so they never interleave.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Protocol

import torch
from transformers import PreTrainedModel

MODEL_CONSTRUCTION_LOCK = threading.RLock()
"""Held around each `from_pretrained` and each seeded initialisation of adapter or head weights;
re-entrant, so a loader may call another."""
TRAINING_DTYPE = torch.float32
"""The default dtype of a loaded model whatever its checkpoint stores (transformers 5 otherwise keeps a
half-precision checkpoint's dtype); a bfloat16 silo asks for bfloat16 (`aslora_core.precision`)."""


class PretrainedLoader(Protocol):
    """A transformers auto class (AutoModel, AutoModelForCausalLM, ...)."""

    def from_pretrained(self, path: str, /, *args: Any, **options: Any) -> Any:
        """Load a checkpoint (transformers types the model it returns as Any)."""
        ...


def load_pretrained(
    loader: PretrainedLoader, model_path: str | Path, *, dtype: torch.dtype = TRAINING_DTYPE, **options: Any
) -> PreTrainedModel:
    """`loader.from_pretrained` from a local directory, never a hub, in `dtype`, under the lock."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with MODEL_CONSTRUCTION_LOCK:
        model: PreTrainedModel = loader.from_pretrained(
            str(model_path), local_files_only=True, dtype=dtype, **options
        )
    return model
