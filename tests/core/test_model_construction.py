"""Building models: in several threads at once torch.nn.init keeps its own functions and every build has
the seeded adapter and head of a build made alone; a half-precision checkpoint trains in float32."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch
from transformers import BertForSequenceClassification

from aslora_core.adapters import load_base_classifier, read_adapter
from aslora_core.config import HeadPooling, LoraSettings, TaskName
from aslora_core.factors import AdapterState
from aslora_core.tasks import make_task
from tests.conftest import tiny_bert_config
from tests.core.payloads import same_states
from tests.torch_init import swapped_init_functions

THREADS = 4
BUILDS_PER_THREAD = 12
"""Enough overlapping loads that, without the lock, transformers left torch.nn.init swapped in every
trial run while writing this test (four threads of twelve loads each)."""
LABELS = ("negative", "positive")
SEED = 3


def _build(model_dir: Path) -> AdapterState:
    task = make_task(TaskName.SEQUENCE_CLASSIFICATION)
    return read_adapter(task.build_model(model_dir, LABELS, LoraSettings(rank=4, alpha=8), SEED))


def test_concurrent_builds_leave_torch_init_alone_and_match_a_lone_build(tiny_model_dir: Path) -> None:
    alone = _build(tiny_model_dir)
    built: list[AdapterState] = []
    failures: list[BaseException] = []

    def build_repeatedly() -> None:
        try:
            for _ in range(BUILDS_PER_THREAD):
                built.append(_build(tiny_model_dir))
        except BaseException as error:  # re-raised in the test's own thread below
            failures.append(error)

    threads = [threading.Thread(target=build_repeatedly) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert not failures, failures
    swapped = swapped_init_functions()
    assert not swapped, f"torch.nn.init functions left swapped by concurrent loads: {swapped}"
    assert len(built) == THREADS * BUILDS_PER_THREAD
    assert all(same_states(state, alone) for state in built)
    assert same_states(_build(tiny_model_dir), alone)


@pytest.mark.parametrize("pooling", list(HeadPooling))
def test_a_half_precision_checkpoint_loads_in_float32(tmp_path: Path, pooling: HeadPooling) -> None:
    BertForSequenceClassification(tiny_bert_config()).half().save_pretrained(tmp_path)
    model = load_base_classifier(tmp_path, num_labels=len(LABELS), pooling=pooling)
    assert {parameter.dtype for parameter in model.parameters()} == {torch.float32}
