"""Map raw label values (integers or names) read from a file to class indices and label names."""

from __future__ import annotations

import re
from collections.abc import Sequence

from aslora_core.data.errors import DataError

# Guards against pointing `label_column` at the text column, which would turn sentences into label names.
DEFAULT_MAX_LABELS = 1000
_INTEGER = re.compile(r"[+-]?\d+")


def label_key(value: object, line: int, source: str) -> str:
    """The canonical string form of one raw label; integers and numeric strings agree."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise DataError(f"{source}: the label at line {line} must be a string or an integer")
    key = value.strip() if isinstance(value, str) else str(value)
    if not key:
        raise DataError(f"{source}: the label at line {line} is empty")
    return key


def assign_labels(
    keys: Sequence[str],
    lines: Sequence[int],
    label_names: Sequence[str] | None,
    source: str,
    max_labels: int = DEFAULT_MAX_LABELS,
) -> tuple[list[int], tuple[str, ...]]:
    """Class index of every key and the label names.

    With `label_names`, keys equal to a name map to its position when every key is a name; otherwise
    integer keys are used as indices into `label_names`. Without it, integer keys keep their value
    (names "0", "1", ...) and other keys are numbered in sorted order.
    """
    integers = [int(key) if _INTEGER.fullmatch(key) else None for key in keys]
    if label_names is not None:
        return _with_names(keys, integers, lines, tuple(label_names), source)
    if all(value is not None for value in integers):
        indices = [value for value in integers if value is not None]
        _check_range(indices, lines, max_labels, source, "the number of classes allowed")
        return indices, tuple(str(i) for i in range(max(indices) + 1))
    names = tuple(sorted(set(keys)))
    if len(names) > max_labels:
        raise DataError(
            f"{source}: the label column has {len(names)} distinct values, more than {max_labels}; "
            "is it the text column?"
        )
    position = {name: index for index, name in enumerate(names)}
    return [position[key] for key in keys], names


def _with_names(
    keys: Sequence[str],
    integers: Sequence[int | None],
    lines: Sequence[int],
    names: tuple[str, ...],
    source: str,
) -> tuple[list[int], tuple[str, ...]]:
    if not names:
        raise DataError("label_names must not be empty")
    if len(set(names)) != len(names):
        raise DataError("label_names must be distinct")
    position = {name: index for index, name in enumerate(names)}
    if all(key in position for key in keys):
        return [position[key] for key in keys], names
    if all(value is not None for value in integers):
        indices = [value for value in integers if value is not None]
        _check_range(indices, lines, len(names), source, f"the {len(names)} label names")
        return indices, names
    line = next(line for key, line in zip(keys, lines, strict=True) if key not in position)
    raise DataError(f"{source}: the label at line {line} is not one of the label names {list(names)}")


def _check_range(indices: Sequence[int], lines: Sequence[int], limit: int, source: str, what: str) -> None:
    for index, line in zip(indices, lines, strict=True):
        if not 0 <= index < limit:
            raise DataError(f"{source}: the label index at line {line} is outside [0, {limit}) for {what}")
