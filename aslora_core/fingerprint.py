"""The base-model fingerprint (DESIGN 4): SHA-256 over the model's tensors and its tokenizer's files."""

from __future__ import annotations

import hashlib
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from aslora_core.mistakes import FixableError

WEIGHT_FILE_PATTERN = "*.safetensors"
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "spiece.model",
    "sentencepiece.bpe.model",
)
"""The files a Hugging Face tokenizer may read; those present in the model folder are hashed."""
LENGTH_PREFIX_BYTES = 8


class FingerprintError(FixableError, ValueError):
    """The folder holds no safetensors weights, or two files hold the same tensor."""

    fix = "point model_path at the base model's folder: its *.safetensors weights and tokenizer files"


class _Digest:
    """SHA-256 over length-prefixed fields, so that no two different field sequences hash alike."""

    def __init__(self) -> None:
        self._sha = hashlib.sha256()

    def field(self, value: bytes | memoryview) -> None:
        view = memoryview(value)
        self._sha.update(view.nbytes.to_bytes(LENGTH_PREFIX_BYTES, "big"))
        self._sha.update(view)

    def hexdigest(self) -> str:
        return self._sha.hexdigest()


def base_model_fingerprint(model_dir: str | Path) -> str:
    """Hex SHA-256 over every tensor (name, dtype, shape, bytes; sorted by name) and the tokenizer's files.

    Only safetensors weights are read (never a pickle); how the tensors are spread over files does not
    change the fingerprint.
    """
    folder = Path(model_dir)
    weight_files = sorted(folder.glob(WEIGHT_FILE_PATTERN))
    if not weight_files:
        raise FingerprintError(f"{folder}: no *.safetensors weights (pickled checkpoints are not read)")
    digest = _Digest()
    with ExitStack() as stack:
        owner: dict[str, Any] = {}
        for path in weight_files:
            handle = stack.enter_context(safe_open(str(path), framework="pt"))
            for name in handle.keys():  # noqa: SIM118 - a safetensors handle is not a mapping
                if name in owner:
                    raise FingerprintError(f"tensor {name!r} appears in two weight files of {folder}")
                owner[name] = handle
        for name in sorted(owner):
            tensor: torch.Tensor = owner[name].get_tensor(name).contiguous()
            digest.field(b"tensor")
            digest.field(name.encode("utf-8"))
            digest.field(str(tensor.dtype).encode("ascii"))
            digest.field(repr(tuple(tensor.shape)).encode("ascii"))
            digest.field(tensor.reshape(-1).view(torch.uint8).numpy().data)
    for file_name in TOKENIZER_FILES:
        path = folder / file_name
        if path.is_file():
            digest.field(b"tokenizer-file")
            digest.field(file_name.encode("utf-8"))
            digest.field(path.read_bytes())
    return digest.hexdigest()
