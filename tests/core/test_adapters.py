"""Adapter state of a peft model: read/write round trip and export that peft loads with equal logits."""

from __future__ import annotations

from pathlib import Path

import torch
from peft import PeftModel
from transformers import AutoModelForSequenceClassification

from aslora_core.adapters import export_adapter, lora_parameters, read_adapter, write_adapter
from aslora_core.factors import AdapterState, LayerFactors
from tests.training.helpers import encoded_texts, tiny_lora_model


def _perturbed(state: AdapterState) -> AdapterState:
    generator = torch.Generator().manual_seed(3)
    return AdapterState(
        layers={
            k: LayerFactors(a=v.a + 0.1, b=torch.randn(v.b.shape, generator=generator))
            for k, v in state.layers.items()
        },
        head={k: torch.randn(v.shape, generator=generator) for k, v in state.head.items()},
        scaling=state.scaling,
    )


def test_layer_names_are_stable_module_paths(tiny_model_dir: Path) -> None:
    state = read_adapter(tiny_lora_model(tiny_model_dir))
    assert state.layer_names == [
        f"bert.encoder.layer.{i}.attention.self.{m}" for i in range(2) for m in ("query", "value")
    ]
    assert sorted(state.head) == ["classifier.bias", "classifier.weight"]
    assert state.scaling == 2.0
    assert list(lora_parameters(tiny_lora_model(tiny_model_dir))) == state.layer_names


def test_write_then_read_round_trips(tiny_model_dir: Path) -> None:
    model = tiny_lora_model(tiny_model_dir)
    wanted = _perturbed(read_adapter(model))
    write_adapter(model, wanted)
    got = read_adapter(model)
    for name in wanted.layer_names:
        assert torch.equal(got.layers[name].a, wanted.layers[name].a)
        assert torch.equal(got.layers[name].b, wanted.layers[name].b)
    for name, tensor in wanted.head.items():
        assert torch.equal(got.head[name], tensor)


def test_exported_adapter_loads_in_peft_with_the_same_logits(tiny_model_dir: Path, tmp_path: Path) -> None:
    model = tiny_lora_model(tiny_model_dir)
    state = _perturbed(read_adapter(model))
    export_adapter(model, state, tmp_path / "adapter")
    batch = encoded_texts(tiny_model_dir, 4).batch([0, 1, 2, 3])
    batch.pop("labels")
    model.eval()
    with torch.no_grad():
        expected = model(**batch).logits
    base = AutoModelForSequenceClassification.from_pretrained(str(tiny_model_dir), num_labels=2)
    loaded = PeftModel.from_pretrained(base, str(tmp_path / "adapter"))
    loaded.eval()
    with torch.no_grad():
        actual = loaded(**batch).logits
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-5)
