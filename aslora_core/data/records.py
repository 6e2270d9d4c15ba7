"""What every task's records offer the splitters and partitioners, and where their fields are."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, Self

import numpy as np
import numpy.typing as npt


class Records(Protocol):
    """Examples held in memory: a class index per example (all 0 where the task has no classes)."""

    def __len__(self) -> int: ...

    @property
    def labels(self) -> npt.NDArray[np.int64]:
        """Class index of every example, in order."""
        ...

    @property
    def label_names(self) -> tuple[str, ...]:
        """Class names in index order (empty where the task has no classes)."""
        ...

    def subset(self, indices: Sequence[int] | npt.NDArray[np.integer]) -> Self:
        """The examples at `indices`, in that order."""
        ...
