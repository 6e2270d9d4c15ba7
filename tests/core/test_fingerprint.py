"""The base-model fingerprint: tensors and tokenizer files count, the split into weight files does not."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from aslora_core.fingerprint import FingerprintError, base_model_fingerprint


def _copy(model_dir: Path, destination: Path) -> Path:
    shutil.copytree(model_dir, destination)
    return destination


def test_the_fingerprint_is_stable_and_ignores_how_weights_are_split(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    reference = base_model_fingerprint(tiny_model_dir)
    assert base_model_fingerprint(tiny_model_dir) == reference
    split = _copy(tiny_model_dir, tmp_path / "split")
    weights = load_file(split / "model.safetensors")
    names = sorted(weights)
    (split / "model.safetensors").unlink()
    save_file({n: weights[n] for n in names[::2]}, split / "model-00001-of-00002.safetensors")
    save_file({n: weights[n] for n in names[1::2]}, split / "model-00002-of-00002.safetensors")
    assert base_model_fingerprint(split) == reference


def test_a_changed_tensor_or_tokenizer_file_changes_the_fingerprint(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    reference = base_model_fingerprint(tiny_model_dir)
    weights_changed = _copy(tiny_model_dir, tmp_path / "weights")
    weights = load_file(weights_changed / "model.safetensors")
    name = sorted(weights)[-1]
    weights[name] = weights[name].clone()
    weights[name].view(-1)[0] += 1.0
    save_file(weights, weights_changed / "model.safetensors")
    assert base_model_fingerprint(weights_changed) != reference
    dtype_changed = _copy(tiny_model_dir, tmp_path / "dtype")
    save_file(
        {k: v.to(torch.float64) for k, v in load_file(dtype_changed / "model.safetensors").items()},
        dtype_changed / "model.safetensors",
    )
    assert base_model_fingerprint(dtype_changed) != reference
    tokenizer_changed = _copy(tiny_model_dir, tmp_path / "tokenizer")
    with (tokenizer_changed / "tokenizer_config.json").open("a") as stream:
        stream.write("\n")
    assert base_model_fingerprint(tokenizer_changed) != reference


def test_a_folder_without_safetensors_weights_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FingerprintError, match=r"no \*\.safetensors"):
        base_model_fingerprint(tmp_path)
