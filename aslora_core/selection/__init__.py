"""Selection policies (which LoRA factor each layer trains each round) and the AS-LoRA score."""

from aslora_core.selection.base import SelectionPolicy
from aslora_core.selection.registry import make_policy

__all__ = ["SelectionPolicy", "make_policy"]
