"""Read CSV, TSV and JSON-lines files into records keyed by column name."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from aslora_core.data.errors import DataError

CSV_SUFFIXES = frozenset({".csv"})
TSV_SUFFIXES = frozenset({".tsv"})
JSONL_SUFFIXES = frozenset({".jsonl", ".json-lines", ".ndjson"})
SUPPORTED_SUFFIXES = tuple(sorted(CSV_SUFFIXES | TSV_SUFFIXES | JSONL_SUFFIXES))
# A BOM written by spreadsheet tools would otherwise become part of the first column name.
FILE_ENCODING = "utf-8-sig"


@dataclass(frozen=True)
class Record:
    """One data row: the 1-based line it starts on and its values by column name."""

    line: int
    values: dict[str, object]


@dataclass(frozen=True)
class Table:
    """Column names (in file order) and the records of one file."""

    columns: tuple[str, ...]
    records: list[Record]


def read_table(path: Path) -> Table:
    """Read `path`, choosing the format by its extension."""
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        expected = ", ".join(SUPPORTED_SUFFIXES)
        raise DataError(f"{path}: unsupported extension {suffix!r}; expected one of {expected}")
    with path.open(encoding=FILE_ENCODING, newline="") as handle:
        if suffix in JSONL_SUFFIXES:
            table = _read_jsonl(handle, path)
        else:
            table = _read_delimited(handle, path, tab_separated=suffix in TSV_SUFFIXES)
    if not table.records:
        raise DataError(f"{path} has no data rows")
    return table


def _read_delimited(handle: TextIO, path: Path, *, tab_separated: bool) -> Table:
    if tab_separated:
        # GLUE TSV files are unquoted: a quote character is ordinary text.
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
    else:
        reader = csv.reader(handle)
    try:
        header = next(reader, None)
        if header is None:
            raise DataError(f"{path} is empty")
        if not header:
            raise DataError(f"{path}: line 1 is blank; expected a header line")
        if len(set(header)) != len(header):
            raise DataError(f"{path}: the header repeats a column name")
        records: list[Record] = []
        previous_end = reader.line_num
        for fields in reader:
            start, previous_end = previous_end + 1, reader.line_num
            if not fields:
                continue
            if len(fields) != len(header):
                raise DataError(
                    f"{path}: the row at line {start} has {len(fields)} fields; the header has {len(header)}"
                )
            records.append(Record(start, dict(zip(header, fields, strict=True))))
    except csv.Error as exc:
        # csv.Error messages describe the syntax problem, not the field contents.
        raise DataError(f"{path}: malformed file near line {reader.line_num}: {exc}") from None
    return Table(tuple(header), records)


def _read_jsonl(handle: TextIO, path: Path) -> Table:
    columns: dict[str, None] = {}
    records: list[Record] = []
    saw_content = False
    for line, text in enumerate(handle, start=1):
        if not text.strip():
            continue
        saw_content = True
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            problem = f"{exc.msg}, column {exc.colno}"
            raise DataError(f"{path}: line {line} is not valid JSON ({problem})") from None
        if not isinstance(value, dict):
            raise DataError(f"{path}: line {line} holds a JSON {type(value).__name__}, expected an object")
        for key in value:
            columns.setdefault(key, None)
        records.append(Record(line, value))
    if not saw_content:
        raise DataError(f"{path} is empty")
    return Table(tuple(columns), records)
