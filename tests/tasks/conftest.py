"""Session fixtures of the task tests: tiny GPT-2, Llama and ViT folders, instruction data, digits."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tasks.builders import save_tiny_gpt2, save_tiny_llama, save_tiny_vit, write_digits_npz


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random GPT-2 with its word-level tokenizer."""
    return save_tiny_gpt2(tmp_path_factory.mktemp("tiny-gpt2"))


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama with its word-level tokenizer."""
    return save_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_vit_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random ViT for 16 x 16 images."""
    return save_tiny_vit(tmp_path_factory.mktemp("tiny-vit"))


@pytest.fixture(scope="session")
def digits_npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """scikit-learn's digits as a .npz file."""
    return write_digits_npz(tmp_path_factory.mktemp("digits") / "digits.npz")
