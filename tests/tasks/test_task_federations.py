"""Each task federated: 2 silos, 2 rounds of real DP-SGD; the loss falls and the PEFT export agrees."""

from __future__ import annotations

from pathlib import Path

from transformers import (
    AutoModelForCausalLM,
    AutoModelForImageClassification,
    AutoModelForSequenceClassification,
)

from aslora_cli.federation_files import TEXT_COLUMN, write_jsonl
from aslora_core.config import TaskName
from tests.tasks.builders import DIGIT_CLASSES, write_instructions
from tests.tasks.federation import assert_export_matches, assert_learns, run, task_settings
from tests.training.helpers import small_texts

TEXT_RECORDS = 192
INSTRUCTION_RECORDS = 240


def test_sequence_classification_federation(tiny_model_dir: Path, tmp_path: Path) -> None:
    data = write_jsonl(small_texts(TEXT_RECORDS), tmp_path / "texts.jsonl")
    settings = task_settings(
        TaskName.SEQUENCE_CLASSIFICATION, tiny_model_dir, data, lr=2.0, text_column=TEXT_COLUMN
    )
    federation, result = run(settings)
    assert_learns(result)
    assert sorted(federation.engine.state.head) == ["classifier.bias", "classifier.weight"]
    base = AutoModelForSequenceClassification.from_pretrained(str(tiny_model_dir), num_labels=2)
    assert_export_matches(federation, base, tmp_path / "adapter")


def test_causal_lm_federation(tiny_gpt2_dir: Path, tmp_path: Path) -> None:
    data = write_instructions(tmp_path / "instructions.jsonl", INSTRUCTION_RECORDS)
    federation, result = run(task_settings(TaskName.CAUSAL_LM, tiny_gpt2_dir, data, lr=8.0, batch_size=48))
    assert_learns(result)
    assert federation.engine.state.head == {}
    perplexities = [record.perplexity for record in result.rounds]
    assert all(p is not None and p > 1 for p in perplexities)
    base = AutoModelForCausalLM.from_pretrained(str(tiny_gpt2_dir))
    assert_export_matches(federation, base, tmp_path / "adapter")


def test_image_classification_federation_on_digits(
    tiny_vit_dir: Path, digits_npz: Path, tmp_path: Path
) -> None:
    settings = task_settings(
        TaskName.IMAGE_CLASSIFICATION,
        tiny_vit_dir,
        digits_npz,
        lr=2.0,
        head_lr=0.5,
        max_train_examples=256,
        dirichlet_alpha=1.0,
    )
    federation, result = run(settings)
    assert_learns(result)
    assert sorted(federation.engine.state.head) == ["classifier.bias", "classifier.weight"]
    base = AutoModelForImageClassification.from_pretrained(str(tiny_vit_dir), num_labels=DIGIT_CLASSES)
    assert_export_matches(federation, base, tmp_path / "adapter")
