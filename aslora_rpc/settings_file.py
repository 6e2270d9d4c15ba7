"""Settings dataclasses to and from TOML tables whose keys are the dataclasses' field names.

One declaration serves both directions: adding a field to a settings dataclass adds its config key, its
default and its type check, with no reader or writer to edit.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from aslora_rpc.config_file import Table

S = TypeVar("S")
TomlValue = str | int | float | bool | list[str]


def _without_none(kind: Any) -> tuple[Any, bool]:
    """The type inside `X | None`, and whether None was allowed."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        members = [arg for arg in typing.get_args(kind) if arg is not type(None)]
        if len(members) == 1:
            return members[0], True
    return kind, False


def _read_value(table: Table, key: str, kind: Any) -> Any:
    """The present key's value as `kind` (bool, int, float, str, Path, a str enum, tuple[str, ...])."""
    if kind is bool:
        return table.boolean(key, default=False)
    if kind is int:
        return table.integer(key)
    if kind is float:
        return table.number(key)
    if kind is str:
        return table.string(key)
    if kind is Path:
        return table.path(key)
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return table.parse(key, kind)
    if typing.get_origin(kind) is tuple and typing.get_args(kind) == (str, ...):
        return table.strings(key)
    raise TypeError(f"no TOML reading for a field of type {kind!r}")


def read_settings(table: Table, cls: type[S], *, defaults: S | None = None, **given: Any) -> S:
    """A `cls` from the keys of `table` named as its fields; an absent key keeps the field's value in
    `defaults` (else the dataclass default), and `given` supplies fields read elsewhere (a nested table,
    say). The dataclass validates the result."""
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = dict(given)
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        if field.name in given or not field.init:
            continue
        if table.has(field.name):
            kind, _ = _without_none(hints[field.name])
            values[field.name] = _read_value(table, field.name, kind)
        elif defaults is not None:
            values[field.name] = getattr(defaults, field.name)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            values[field.name] = _read_value(table, field.name, hints[field.name])
    return cls(**values)


def _toml_value(value: Any) -> TomlValue | None:
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return [str(item) for item in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise TypeError(f"no TOML writing for {value!r}")


def settings_table(settings: Any, *, skip: tuple[str, ...] = ()) -> dict[str, TomlValue]:
    """The TOML table that `read_settings` reads back as `settings` (unset optional fields left out; nested
    dataclasses and the `skip` fields are the caller's)."""
    table: dict[str, TomlValue] = {}
    for field in dataclasses.fields(settings):
        value = getattr(settings, field.name)
        if field.name in skip or dataclasses.is_dataclass(value) or isinstance(value, Mapping):
            continue
        written = _toml_value(value)
        if written is not None:
            table[field.name] = written
    return table
