"""Selection policies (which LoRA factor each layer trains each round) and the AS-LoRA score."""

from aslora_core.selection.base import SelectionPolicy
from aslora_core.selection.registry import POLICY_NAMES, make_policy

__all__ = ["POLICY_NAMES", "SelectionPolicy", "make_policy"]
