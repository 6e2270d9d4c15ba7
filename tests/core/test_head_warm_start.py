"""The label-text warm start of a mean-pooled head: its rows are the scaled, centred embeddings of the
texts through the base model, built alike wherever the model is built, and refused where it cannot apply."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from aslora_cli.federation_files import toml_text
from aslora_coordinator.config_loader import load_coordinator_config
from aslora_core.adapters import load_base_classifier, read_adapter
from aslora_core.config import ConfigError, HeadPooling, LoraSettings, TaskName
from aslora_core.head_warm_start import LABEL_TEXT_HEAD_SCALE
from aslora_core.pooled_classifier import MeanPooledClassifier
from aslora_core.tasks import make_task
from tests.grpc.helpers import coordinator_tables

LABELS = ("neg", "pos", "neutral")
TEXTS = ("a negative review", "a positive review", "a neutral review")
HEAD = "classifier.weight"


def _settings(texts: tuple[str, ...] = TEXTS) -> LoraSettings:
    return LoraSettings(rank=4, alpha=8, head_pooling=HeadPooling.MEAN, head_label_texts=texts)


def test_the_head_starts_from_the_centred_scaled_label_text_embeddings(tiny_model_dir: Path) -> None:
    task = make_task(TaskName.SEQUENCE_CLASSIFICATION)
    head = read_adapter(task.build_model(tiny_model_dir, LABELS, _settings(), seed=0)).head[HEAD]

    base = load_base_classifier(tiny_model_dir, len(LABELS), HeadPooling.MEAN)
    assert isinstance(base, MeanPooledClassifier)
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir), local_files_only=True)
    with torch.no_grad():
        embeddings = base.eval().embed(**tokenizer(list(TEXTS), padding=True, return_tensors="pt"))
    expected = LABEL_TEXT_HEAD_SCALE * (embeddings - embeddings.mean(dim=0))
    torch.testing.assert_close(head, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(head.sum(dim=0), torch.zeros(head.shape[1]), rtol=0, atol=1e-5)
    # The same start whatever the seed: it comes from the texts, not from an RNG.
    again = read_adapter(task.build_model(tiny_model_dir, LABELS, _settings(), seed=7)).head[HEAD]
    assert torch.equal(head, again)
    random_head = read_adapter(task.build_model(tiny_model_dir, LABELS, _settings(()), seed=0)).head[HEAD]
    assert not torch.allclose(head, random_head)


def test_texts_must_match_the_labels_and_need_mean_pooling(tiny_model_dir: Path, tmp_path: Path) -> None:
    task = make_task(TaskName.SEQUENCE_CLASSIFICATION)
    with pytest.raises(ConfigError, match="2 texts for 3 labels"):
        task.build_model(tiny_model_dir, LABELS, _settings(TEXTS[:2]), seed=0)
    with pytest.raises(ConfigError, match="head_pooling = mean"):
        LoraSettings(head_label_texts=TEXTS)
    with pytest.raises(ConfigError, match="blank"):
        _settings(("a", " ", "c"))
    tables = coordinator_tables(tiny_model_dir)
    tables[""]["labels"] = list(LABELS)
    tables["lora"] = {"head_pooling": "mean", "head_label_texts": list(TEXTS[:2])}
    path = tmp_path / "coordinator.toml"
    path.write_text(toml_text(tables))
    with pytest.raises(ConfigError, match="head_label_texts: 2 texts for 3 labels"):
        load_coordinator_config(path)
    tables["lora"]["head_label_texts"] = list(TEXTS)
    path.write_text(toml_text(tables))
    run = load_coordinator_config(path).run
    assert run is not None and run.lora.head_label_texts == TEXTS
