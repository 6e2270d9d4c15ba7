"""Opacus per-sample gradients of each task's LoRA layers and head equal single-example backward passes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from opacus import GradSampleModule
from peft import PeftModel
from torch import nn

from aslora_core.config import HeadPooling, LoraSettings, RecordFields, TaskName
from aslora_core.data import EncodedDataset
from aslora_core.tasks import Task, make_task
from aslora_core.training.private_layers import UnsupportedLayerError, require_private_layers
from tests.tasks.builders import write_instructions
from tests.training.helpers import encoded_texts

EXAMPLES = 5
MAX_LENGTH = 16
TOLERANCE = 1e-6


def _trainable_double(model: PeftModel) -> PeftModel:
    """The model in float64 with random B factors (B = 0 would make every A gradient zero)."""
    model = model.double()
    model.train()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.1)
    return model


def _assert_per_sample_matches(task: Task, model: PeftModel, data: EncodedDataset) -> None:
    batch = {k: v.double() if v.is_floating_point() else v for k, v in data.batch(range(EXAMPLES)).items()}
    require_private_layers(model)
    gsm = GradSampleModule(model, batch_first=True, loss_reduction="sum", strict=False)
    task.loss(gsm, batch).backward()
    trained = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert trained
    per_sample = {n: getattr(p, "grad_sample").detach().clone() for n, p in trained}  # noqa: B009
    gsm.to_standard_module()
    for index in range(EXAMPLES):
        model.zero_grad(set_to_none=True)
        task.loss(model, {k: v[index : index + 1] for k, v in batch.items()}).backward()
        for name, param in trained:
            torch.testing.assert_close(per_sample[name][index], param.grad, rtol=0, atol=TOLERANCE)


def test_mean_pooled_classifier_per_sample_gradients(tiny_model_dir: Path) -> None:
    task = make_task(TaskName.SEQUENCE_CLASSIFICATION)
    lora = LoraSettings(rank=2, alpha=4, head_pooling=HeadPooling.MEAN)
    model = _trainable_double(task.build_model(tiny_model_dir, ("negative", "positive"), lora, seed=0))
    _assert_per_sample_matches(task, model, encoded_texts(tiny_model_dir, EXAMPLES))


def test_gpt2_causal_lm_per_sample_gradients(tiny_gpt2_dir: Path, tmp_path: Path) -> None:
    task = make_task(TaskName.CAUSAL_LM)
    model = _trainable_double(task.build_model(tiny_gpt2_dir, (), LoraSettings(rank=2, alpha=4), seed=0))
    records = task.load_records(write_instructions(tmp_path / "i.jsonl", EXAMPLES), RecordFields(), None)
    _assert_per_sample_matches(task, model, task.encode(records, tiny_gpt2_dir, MAX_LENGTH))


def test_vit_image_classification_per_sample_gradients(tiny_vit_dir: Path, digits_npz: Path) -> None:
    task = make_task(TaskName.IMAGE_CLASSIFICATION)
    records = task.load_records(digits_npz, RecordFields(), None)
    model = task.build_model(tiny_vit_dir, records.label_names, LoraSettings(rank=2, alpha=4), seed=0)
    data = task.encode(records.subset(range(EXAMPLES)), tiny_vit_dir, MAX_LENGTH)
    _assert_per_sample_matches(task, _trainable_double(model), data)


def test_a_trainable_layer_with_buffers_is_refused_by_name() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    with pytest.raises(UnsupportedLayerError, match=r"layer 1 \(BatchNorm1d\)"):
        require_private_layers(model)
    model[1].requires_grad_(False)
    require_private_layers(model)
