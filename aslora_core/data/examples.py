"""Labelled text examples (single sentences or sentence pairs) held in memory."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from aslora_core.data.errors import DataError


@dataclass(frozen=True)
class TextExample:
    """One text (or text pair) with its class index."""

    text: str
    text_pair: str | None
    label: int


@dataclass(frozen=True)
class LabelledTexts:
    """A sequence of examples whose labels index into `label_names`."""

    examples: tuple[TextExample, ...]
    label_names: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.label_names:
            raise DataError("a labelled data set needs at least one label name")
        if len(set(self.label_names)) != len(self.label_names):
            raise DataError("label names must be distinct")
        num_labels = len(self.label_names)
        for position, example in enumerate(self.examples):
            if not 0 <= example.label < num_labels:
                raise DataError(
                    f"example {position} has label {example.label}, outside [0, {num_labels}) "
                    f"for {num_labels} label names"
                )

    def __len__(self) -> int:
        return len(self.examples)

    @property
    def num_labels(self) -> int:
        """Number of classes (the length of `label_names`)."""
        return len(self.label_names)

    @property
    def labels(self) -> npt.NDArray[np.int64]:
        """Class index of every example, in order."""
        return np.fromiter((e.label for e in self.examples), dtype=np.int64, count=len(self.examples))

    @property
    def has_pairs(self) -> bool:
        """Whether the examples are sentence pairs (judged by the first example)."""
        return bool(self.examples) and self.examples[0].text_pair is not None

    def subset(self, indices: Sequence[int] | npt.NDArray[np.integer]) -> LabelledTexts:
        """The examples at `indices` (in that order), with the same label names."""
        size = len(self.examples)
        picked: list[TextExample] = []
        for raw in indices:
            index = int(raw)
            if not 0 <= index < size:
                raise IndexError(f"index {index} is outside [0, {size})")
            picked.append(self.examples[index])
        return LabelledTexts(tuple(picked), self.label_names)
