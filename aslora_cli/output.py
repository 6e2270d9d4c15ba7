"""Command output as a table, a wide table or JSON, chosen by `-o`; tables are tab-separated when
stdout is not a terminal, so that a pipe gets every column in full."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

TSV_TITLE_PREFIX = "# "
"""A table's title when it is written tab-separated: a comment line that `grep -v '^#'` drops."""


class OutputFormat(StrEnum):
    """How a command prints its answer."""

    TABLE = "table"
    WIDE = "wide"
    JSON = "json"


OutputOption = Annotated[
    OutputFormat,
    typer.Option(
        "--output",
        "-o",
        "--format",
        help="table, wide (every column) or json; a table is tab-separated when stdout is not a terminal.",
    ),
]
"""The output option every operator command takes."""


def to_jsonable(value: Any) -> Any:
    """Dataclasses (nested) as dicts, tuples as lists; everything else as is."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: to_jsonable(getattr(value, field.name)) for field in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [to_jsonable(item) for item in value]
    if isinstance(value, dict):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    return value


def print_json(value: Any) -> None:
    """One JSON document on stdout."""
    print(json.dumps(to_jsonable(value), indent=2))


def cell(value: Any) -> str:
    """A table cell: floats to 4 significant digits, None as a dash."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _tsv_cell(value: Any) -> str:
    return " ".join(cell(value).split())


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A titled table on stdout: drawn on a terminal, tab-separated (title as a comment line) otherwise."""
    if not sys.stdout.isatty():
        lines = [TSV_TITLE_PREFIX + title, "\t".join(columns)]
        lines += ["\t".join(_tsv_cell(value) for value in row) for row in rows]
        print("\n".join(lines))
        return
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(cell(value) for value in row))
    Console().print(table)


def print_fields(title: str, fields: Sequence[tuple[str, Any]]) -> None:
    """A two-column table of named values."""
    print_table(title, ("field", "value"), fields)


def narrow(
    columns: Sequence[str], rows: Sequence[Sequence[Any]], wide_only: Sequence[str], output: OutputFormat
) -> tuple[list[str], list[list[Any]]]:
    """The columns and rows to print: all of them for `-o wide`, else without the `wide_only` columns."""
    keep = [i for i, name in enumerate(columns) if output is OutputFormat.WIDE or name not in wide_only]
    return [columns[i] for i in keep], [[row[i] for i in keep] for row in rows]


def clock_time(seconds: float | None) -> str:
    """A Unix time as the local ISO date and time (empty for none)."""
    if seconds is None:
        return ""
    return datetime.fromtimestamp(seconds).isoformat(sep=" ", timespec="seconds")
