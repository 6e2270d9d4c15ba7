"""Tokenize labelled texts once into padded tensors that a trainer gathers batches from by index."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import torch
from torch.utils.data import Dataset

from aslora_core.data.errors import DataError
from aslora_core.data.examples import LabelledTexts

# Bounds the tokenizer's temporary Python lists; the result tensors are preallocated once.
ENCODE_CHUNK_SIZE = 4096
MODEL_INPUT_KEYS = ("input_ids", "attention_mask", "token_type_ids")
LABELS_KEY = "labels"
TOKEN_LABELS_DIM = 2
"""Labels of this many dimensions are per token (examples x positions), cut with the padding."""


class Tokenizer(Protocol):
    """The part of a Hugging Face tokenizer that `encode` calls."""

    def __call__(self, *args: Any, **kwargs: Any) -> Mapping[str, Any]: ...


class EncodedDataset(Dataset[dict[str, torch.Tensor]]):
    """Equal-length tensors (model inputs and `labels`) indexed along their first dimension."""

    def __init__(self, tensors: Mapping[str, torch.Tensor]) -> None:
        if LABELS_KEY not in tensors:
            raise DataError(f"an encoded data set needs a {LABELS_KEY!r} tensor")
        sizes = {name: int(tensor.shape[0]) for name, tensor in tensors.items()}
        if len(set(sizes.values())) != 1:
            raise DataError(f"encoded tensors disagree on the number of examples: {sizes}")
        self._tensors = dict(tensors)
        self._size = sizes[LABELS_KEY]

    def __len__(self) -> int:
        return self._size

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {name: tensor[index] for name, tensor in self._tensors.items()}

    @property
    def tensors(self) -> dict[str, torch.Tensor]:
        """All tensors by name (a new dict over the same tensors)."""
        return dict(self._tensors)

    def batch(self, indices: torch.Tensor | Sequence[int]) -> dict[str, torch.Tensor]:
        """The examples at `indices`, without the trailing positions that are padding in all of them.

        Cutting shared trailing padding leaves a padding-masked model's outputs unchanged and makes
        batches of short texts (most of SST-2) several times cheaper.
        """
        index = torch.as_tensor(indices, dtype=torch.long)
        gathered = {name: tensor.index_select(0, index) for name, tensor in self._tensors.items()}
        mask = gathered.get("attention_mask")
        if mask is None or mask.numel() == 0:
            return gathered
        used = torch.nonzero(mask.any(dim=0)).flatten()
        length = int(used[-1]) + 1 if used.numel() else 1
        return {
            name: tensor[:, :length] if _is_token_aligned(name, tensor) else tensor
            for name, tensor in gathered.items()
        }


def _is_token_aligned(name: str, tensor: torch.Tensor) -> bool:
    """Model inputs, and per-token labels (causal LM), have one entry per token position."""
    return name in MODEL_INPUT_KEYS or (name == LABELS_KEY and tensor.dim() == TOKEN_LABELS_DIM)


def encode(data: LabelledTexts, tokenizer: Tokenizer, max_length: int) -> EncodedDataset:
    """Tokenize every example (as a pair where it has `text_pair`), padded and truncated to `max_length`."""
    if max_length < 1:
        raise ValueError(f"max_length must be positive, got {max_length}")
    if len(data) == 0:
        raise DataError("there are no examples to encode")
    pair_flags = {example.text_pair is not None for example in data.examples}
    if len(pair_flags) != 1:
        raise DataError("either every example or none must have a text pair")
    tensors: dict[str, torch.Tensor] = {}
    for start in range(0, len(data), ENCODE_CHUNK_SIZE):
        chunk = data.examples[start : start + ENCODE_CHUNK_SIZE]
        texts = [example.text for example in chunk]
        pairs = [example.text_pair or "" for example in chunk] if data.has_pairs else None
        encoded = tokenizer(
            texts,
            pairs,
            padding="max_length",
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
        )
        present = [key for key in MODEL_INPUT_KEYS if key in encoded]
        if start == 0:
            tensors = {key: torch.empty((len(data), max_length), dtype=torch.long) for key in present}
        elif set(present) != set(tensors):
            raise DataError("the tokenizer returned different outputs for different chunks")
        for key in present:
            tensors[key][start : start + len(chunk)] = torch.as_tensor(encoded[key], dtype=torch.long)
    if "input_ids" not in tensors:
        raise DataError("the tokenizer returned no input_ids")
    tensors[LABELS_KEY] = torch.from_numpy(data.labels)
    return EncodedDataset(tensors)
