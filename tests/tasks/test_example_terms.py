"""Each task's per-example evaluation terms (what a silo's evaluation release sums): one example's terms
depend on that example alone, its loss is its training loss, and its correct share is in [0, 1]."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from aslora_core.config import LoraSettings, RecordFields, TaskName
from aslora_core.data.records import Records
from aslora_core.tasks import make_task
from tests.tasks.builders import write_instructions
from tests.training.helpers import small_texts

EXAMPLES = 6
MAX_LENGTH = 16
LORA = LoraSettings(rank=2, alpha=4)


def _case(name: str, request: pytest.FixtureRequest, tmp_path: Path) -> tuple[TaskName, Path, Records]:
    if name == "causal-lm":
        model_dir = request.getfixturevalue("tiny_gpt2_dir")
        task = make_task(TaskName.CAUSAL_LM)
        records = task.load_records(write_instructions(tmp_path / "i.jsonl", EXAMPLES), RecordFields(), None)
        return TaskName.CAUSAL_LM, model_dir, records
    if name == "image-classification":
        task = make_task(TaskName.IMAGE_CLASSIFICATION)
        records = task.load_records(request.getfixturevalue("digits_npz"), RecordFields(), None)
        return (
            TaskName.IMAGE_CLASSIFICATION,
            request.getfixturevalue("tiny_vit_dir"),
            records.subset(range(EXAMPLES)),
        )
    return TaskName.SEQUENCE_CLASSIFICATION, request.getfixturevalue("tiny_model_dir"), small_texts(EXAMPLES)


@pytest.mark.parametrize("name", ["sequence-classification", "causal-lm", "image-classification"])
@torch.no_grad()
def test_example_terms_are_each_examples_own(
    name: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    task_name, model_dir, records = _case(name, request, tmp_path)
    task = make_task(task_name)
    data = task.encode(records, model_dir, MAX_LENGTH)
    model = task.build_model(model_dir, records.label_names, LORA, seed=0).double().eval()
    everyone = list(range(len(data)))
    batch = {k: v.double() if v.is_floating_point() else v for k, v in data.batch(everyone).items()}
    terms = task.example_terms(model, batch)
    assert terms.loss.shape == terms.correct.shape == (len(data),)
    torch.testing.assert_close(terms.loss.sum(), task.loss(model, batch), rtol=1e-9, atol=0)
    assert bool(((terms.correct >= 0) & (terms.correct <= 1)).all())
    for index in everyone:
        alone = {k: v.double() if v.is_floating_point() else v for k, v in data.batch([index]).items()}
        own = task.example_terms(model, alone)
        torch.testing.assert_close(own.loss[0], terms.loss[index], rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(own.correct[0], terms.correct[index], rtol=0, atol=1e-12)
