"""Command output as JSON or as rich tables, chosen by --format."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

from rich.console import Console
from rich.table import Table


class OutputFormat(StrEnum):
    """How a command prints its answer."""

    JSON = "json"
    TABLE = "table"


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


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A titled table on stdout."""
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(cell(value) for value in row))
    Console().print(table)


def print_fields(title: str, fields: Sequence[tuple[str, Any]]) -> None:
    """A two-column table of named values."""
    print_table(title, ("field", "value"), fields)
