"""LoRA targets per architecture by default, explicit names when given, a clear error otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest
from peft import LoraConfig
from transformers import (
    AutoModelForCausalLM,
    AutoModelForImageClassification,
    BertForSequenceClassification,
    DistilBertConfig,
    DistilBertForSequenceClassification,
)
from transformers.pytorch_utils import Conv1D

from aslora_core.adapters import ADAPTER, attach_lora, lora_parameters
from aslora_core.config import ConfigError, LoraSettings
from aslora_core.lora_targets import resolve_target_modules
from tests.tasks.builders import DIGIT_CLASSES

AUTO = LoraSettings()
TINY_VOCAB = 64


def test_bert_gets_query_and_value(tiny_model_dir: Path) -> None:
    model = BertForSequenceClassification.from_pretrained(str(tiny_model_dir), num_labels=2)
    assert resolve_target_modules(model, AUTO) == ("query", "value")


def test_gpt2_gets_c_attn_with_fan_in_fan_out(tiny_gpt2_dir: Path) -> None:
    base = AutoModelForCausalLM.from_pretrained(str(tiny_gpt2_dir))
    assert resolve_target_modules(base, AUTO) == ("c_attn",)
    assert isinstance(base.get_submodule("transformer.h.0.attn.c_attn"), Conv1D)
    model = attach_lora(base, AUTO, seed=0, head_modules=(), task_type="CAUSAL_LM")
    config = model.peft_config[ADAPTER]
    assert isinstance(config, LoraConfig) and config.fan_in_fan_out
    assert sorted(lora_parameters(model)) == [f"transformer.h.{i}.attn.c_attn" for i in range(2)]


def test_llama_gets_all_four_attention_projections(tiny_llama_dir: Path) -> None:
    base = AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir))
    assert resolve_target_modules(base, AUTO) == ("q_proj", "k_proj", "v_proj", "o_proj")
    model = attach_lora(base, AUTO, seed=0, head_modules=(), task_type="CAUSAL_LM")
    projections = {name.rsplit(".", 1)[-1] for name in lora_parameters(model)}
    assert projections == {"q_proj", "k_proj", "v_proj", "o_proj"}
    assert len(lora_parameters(model)) == 8


def test_vit_gets_its_query_and_value_projections(tiny_vit_dir: Path) -> None:
    base = AutoModelForImageClassification.from_pretrained(str(tiny_vit_dir), num_labels=DIGIT_CLASSES)
    targets = resolve_target_modules(base, AUTO)
    assert targets in (("query", "value"), ("q_proj", "v_proj"))
    modules = {name.rsplit(".", 1)[-1] for name, _ in base.named_modules()}
    assert set(targets) <= modules


def test_explicit_targets_override_the_default(tiny_llama_dir: Path) -> None:
    base = AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir))
    explicit = LoraSettings(target_modules=("v_proj",))
    assert resolve_target_modules(base, explicit) == ("v_proj",)


def test_an_architecture_without_defaults_needs_explicit_targets() -> None:
    config = DistilBertConfig(vocab_size=TINY_VOCAB, dim=16, n_layers=1, n_heads=2, hidden_dim=32)
    model = DistilBertForSequenceClassification(config)
    with pytest.raises(ConfigError, match="no default LoRA targets for model type 'distilbert'"):
        resolve_target_modules(model, AUTO)
    assert resolve_target_modules(model, LoraSettings(target_modules=("q_lin", "v_lin"))) == (
        "q_lin",
        "v_lin",
    )


def test_auto_cannot_be_mixed_with_names() -> None:
    with pytest.raises(ConfigError, match="cannot be combined"):
        LoraSettings(target_modules=("auto", "query"))
