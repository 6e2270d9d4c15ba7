"""Which modules LoRA adapts: the defaults of each architecture, or the names the settings give."""

from __future__ import annotations

from torch import nn
from transformers.pytorch_utils import Conv1D

from aslora_core.config import ConfigError, LoraSettings

ATTENTION_QV = ("query", "value")
PROJECTIONS_QV = ("q_proj", "v_proj")
PROJECTIONS_QKVO = ("q_proj", "k_proj", "v_proj", "o_proj")
DEFAULT_TARGETS: dict[str, tuple[tuple[str, ...], ...]] = {
    "bert": (ATTENTION_QV,),
    "roberta": (ATTENTION_QV,),
    "xlm-roberta": (ATTENTION_QV,),
    "gpt2": (("c_attn",),),
    "llama": (PROJECTIONS_QKVO,),
    "mistral": (PROJECTIONS_QKVO,),
    "qwen2": (PROJECTIONS_QKVO,),
    # ViT names its attention projections `query`/`value` before transformers 5 and `q_proj`/`v_proj` since.
    "vit": (ATTENTION_QV, PROJECTIONS_QV),
}
"""Per `config.model_type`: candidate target sets, the first whose names all occur in the model wins."""


def resolve_target_modules(model: nn.Module, lora: LoraSettings) -> tuple[str, ...]:
    """The module names LoRA adapts in `model`: the settings' own names, or its architecture's defaults."""
    if not lora.auto_targets:
        return lora.target_modules
    model_type = str(getattr(getattr(model, "config", None), "model_type", ""))
    candidates = DEFAULT_TARGETS.get(model_type)
    if candidates is None:
        known = ", ".join(sorted(DEFAULT_TARGETS))
        raise ConfigError(
            f"no default LoRA targets for model type {model_type or 'unknown'!r} (known: {known}); "
            "name the modules to adapt with target_modules"
        )
    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    for targets in candidates:
        if set(targets) <= present:
            return targets
    raise ConfigError(
        f"the {model_type} model has none of its default LoRA targets {list(candidates)}; "
        "name the modules to adapt with target_modules"
    )


def targets_are_conv1d(model: nn.Module, targets: tuple[str, ...]) -> bool:
    """Whether the targeted modules are transformers' `Conv1D` (GPT-2), whose weight is stored (in, out):
    peft then needs `fan_in_fan_out=True`. Mixing `Conv1D` and `Linear` targets is refused."""
    kinds = {
        isinstance(module, Conv1D)
        for name, module in model.named_modules()
        if name.rsplit(".", 1)[-1] in targets
    }
    if len(kinds) > 1:
        raise ConfigError(f"LoRA targets {list(targets)} mix Conv1D and Linear layers; adapt one kind")
    return kinds == {True}
