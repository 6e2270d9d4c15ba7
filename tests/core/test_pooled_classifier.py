"""The mean-pooling head: padding-invariant, private per sample, trained and exported like the [CLS] head."""

from __future__ import annotations

from pathlib import Path

import torch
from peft import PeftModel
from torch import nn

from aslora_core.adapters import export_adapter, load_base_classifier, read_adapter
from aslora_core.config import HeadPooling, LoraSettings, TaskName
from aslora_core.factor_choice import FactorChoice
from aslora_core.pooled_classifier import MeanPooledClassifier
from aslora_core.tasks import make_task
from tests.training.helpers import encoded_texts, make_trainer

PADDING = 5
LABELS = ("negative", "positive")


def _mean_model(model_dir: Path) -> PeftModel:
    settings = LoraSettings(rank=4, alpha=8, head_pooling=HeadPooling.MEAN)
    model = make_task(TaskName.SEQUENCE_CLASSIFICATION).build_model(model_dir, LABELS, settings, seed=0)
    assert isinstance(model.get_base_model(), MeanPooledClassifier)
    return model


def test_logits_do_not_depend_on_padding(tiny_model_dir: Path) -> None:
    model = _mean_model(tiny_model_dir).eval()
    batch = encoded_texts(tiny_model_dir, 3).batch([0, 1, 2])
    batch.pop("labels")
    padded = {k: nn.functional.pad(v, (0, PADDING)) for k, v in batch.items()}
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).logits, model(**padded).logits)


def test_trained_under_dp_and_exported_adapter_loads_in_peft(tiny_model_dir: Path, tmp_path: Path) -> None:
    model = _mean_model(tiny_model_dir)
    start = read_adapter(model)
    assert sorted(start.head) == ["classifier.weight"]
    selection = {name: FactorChoice.B for name in start.layer_names}
    trainer = make_trainer(model, encoded_texts(tiny_model_dir, 32), head_clip_norm=0.5)
    trained = trainer.train_round(0, start, selection, noise_multiplier=1.0)
    state = read_adapter(model)
    assert not torch.equal(state.head["classifier.weight"], start.head["classifier.weight"])
    assert trained.update.statistics is not None
    assert trained.update.statistics.noise_variance > 0
    export_adapter(model, state, tmp_path / "adapter")
    batch = encoded_texts(tiny_model_dir, 4).batch([0, 1, 2, 3])
    batch.pop("labels")
    loaded = PeftModel.from_pretrained(
        load_base_classifier(tiny_model_dir, 2, HeadPooling.MEAN), str(tmp_path / "adapter")
    ).eval()
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch).logits, model(**batch).logits)
