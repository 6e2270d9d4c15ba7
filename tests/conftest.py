"""Shared fixtures: a tiny randomly initialised BERT saved as a local model directory, and real text."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

from aslora_core.adapters import default_model_path
from tests.torch_init import swapped_init_functions

os.environ.setdefault("HF_HUB_OFFLINE", "1")

TINY_HIDDEN = 32
TINY_LAYERS = 2
TINY_MAX_POSITIONS = 64
SST2_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sst2"


def tiny_bert_config(num_labels: int = 2) -> BertConfig:
    """A BERT small enough for unit tests, with the MiniLM vocabulary and no dropout."""
    config = BertConfig(
        vocab_size=30522,
        hidden_size=TINY_HIDDEN,
        num_hidden_layers=TINY_LAYERS,
        num_attention_heads=2,
        intermediate_size=2 * TINY_HIDDEN,
        max_position_embeddings=TINY_MAX_POSITIONS,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    config.num_labels = num_labels
    return config


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local model directory (weights, config, tokenizer) of a tiny random BERT."""
    directory = tmp_path_factory.mktemp("tiny-bert")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        BertForSequenceClassification(tiny_bert_config()).save_pretrained(directory)
    AutoTokenizer.from_pretrained(str(default_model_path()), local_files_only=True).save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def sst2_dir() -> Path:
    """The shared SST-2 folder; tests that need it skip where it is absent."""
    if not (SST2_DIR / "train.tsv").exists():
        pytest.skip(f"SST-2 not found at {SST2_DIR}")
    return SST2_DIR


@pytest.fixture
def single_thread() -> Iterator[None]:
    """One torch thread, as the child processes of a gRPC simulation have, so in-process sums match theirs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def torch_init_left_alone() -> Iterator[None]:
    """Fail the test after which torch.nn.init is left swapped (overlapping model loads in threads do
    that, and every later seeded initialisation in the process would silently be skipped)."""
    yield
    assert not swapped_init_functions(), "torch.nn.init left swapped: a model load raced another thread's"
