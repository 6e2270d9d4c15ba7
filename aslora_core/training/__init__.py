"""The DP local trainer of a silo: Opacus per-sample gradients, masked factor steps, score statistics."""

from aslora_core.training.trainer import LocalResult, LocalTrainer, StepCallback

__all__ = ["LocalResult", "LocalTrainer", "StepCallback"]
