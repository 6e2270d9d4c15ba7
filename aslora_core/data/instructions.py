"""Instruction-tuning records (prompt, response) and their encoding with the prompt masked out of the loss."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from aslora_core.data._tables import Record, read_table
from aslora_core.data.encoding import EncodedDataset, Tokenizer
from aslora_core.data.errors import DataError

_LOG = logging.getLogger(__name__)
IGNORE_INDEX = -100
"""Label of a token that the loss skips (prompt and padding): PyTorch's cross-entropy default."""
FALLBACK_PAD_ID = 0


@dataclass(frozen=True)
class InstructionRecords:
    """Prompt and response texts; they have no classes (every label is 0)."""

    prompts: tuple[str, ...]
    responses: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.prompts) != len(self.responses):
            raise DataError("every prompt needs exactly one response")

    def __len__(self) -> int:
        return len(self.prompts)

    @property
    def labels(self) -> npt.NDArray[np.int64]:
        """All zeros: instruction data has no classes (splits and partitions are plain random)."""
        return np.zeros(len(self), dtype=np.int64)

    @property
    def label_names(self) -> tuple[str, ...]:
        """None: instruction data has no classes."""
        return ()

    def subset(self, indices: Sequence[int] | npt.NDArray[np.integer]) -> InstructionRecords:
        """The records at `indices`, in that order."""
        picked = [int(index) for index in indices]
        for index in picked:
            if not 0 <= index < len(self):
                raise IndexError(f"index {index} is outside [0, {len(self)})")
        return InstructionRecords(
            tuple(self.prompts[i] for i in picked), tuple(self.responses[i] for i in picked)
        )


def load_instructions(
    path: str | os.PathLike[str], *, prompt_field: str = "prompt", response_field: str = "response"
) -> InstructionRecords:
    """Read prompt/response pairs from a JSON-lines (or CSV/TSV) file."""
    source = Path(path)
    table = read_table(source)
    missing = [name for name in (prompt_field, response_field) if name not in table.columns]
    if missing:
        raise DataError(f"{source}: no field(s) {missing}")
    prompts = tuple(_text(record, prompt_field, source) for record in table.records)
    responses = tuple(_text(record, response_field, source) for record in table.records)
    _LOG.info("loaded %d instruction records from %s", len(prompts), source)
    return InstructionRecords(prompts, responses)


def _text(record: Record, field: str, source: Path) -> str:
    value = record.values.get(field)
    if not isinstance(value, str):
        raise DataError(f"{source}: field {field!r} at line {record.line} is not a string")
    return value


def encode_instructions(
    records: InstructionRecords,
    tokenizer: Tokenizer,
    max_length: int,
    *,
    pad_token_id: int | None,
    eos_token_id: int | None,
) -> EncodedDataset:
    """Prompt tokens then response tokens (and EOS), right-padded to `max_length`; `labels` copies the
    response tokens and is IGNORE_INDEX on the prompt and the padding, so only the response is learnt."""
    if len(records) == 0:
        raise DataError("there are no instruction records to encode")
    prompts = tokenizer(list(records.prompts))["input_ids"]
    responses = tokenizer(list(records.responses), add_special_tokens=False)["input_ids"]
    size = len(records)
    pad = pad_token_id if pad_token_id is not None else (eos_token_id or FALLBACK_PAD_ID)
    input_ids = torch.full((size, max_length), pad, dtype=torch.long)
    attention = torch.zeros((size, max_length), dtype=torch.long)
    labels = torch.full((size, max_length), IGNORE_INDEX, dtype=torch.long)
    ending = [eos_token_id] if eos_token_id is not None else []
    for row, (prompt, response) in enumerate(zip(prompts, responses, strict=True)):
        tokens = [*prompt, *response, *ending][:max_length]
        start = min(len(prompt), max_length)
        input_ids[row, : len(tokens)] = torch.as_tensor(tokens, dtype=torch.long)
        attention[row, : len(tokens)] = 1
        labels[row, start : len(tokens)] = input_ids[row, start : len(tokens)]
    if not bool((labels != IGNORE_INDEX).any()):
        raise DataError(f"no response token fits in max_length {max_length}: every prompt fills it")
    return EncodedDataset({"input_ids": input_ids, "attention_mask": attention, "labels": labels})
