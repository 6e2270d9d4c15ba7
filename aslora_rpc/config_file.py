"""Read a TOML config file table by table into typed values, rejecting unknown keys and wrong types.

Helm writes whole numbers as TOML integers (docs/deploy.md), so an integer is accepted wherever a float
is expected; a float is never accepted for an integer. A relative path in a file names a place relative to
the file's own folder, not to the working directory of the process that reads it.
"""

from __future__ import annotations

import difflib
import enum
import math
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from aslora_core.config import ConfigError
from aslora_rpc.endpoints import Endpoint
from aslora_rpc.tls import TlsFiles

T = TypeVar("T")
SUGGESTION_CUTOFF = 0.6
"""How alike an unknown key and a known one must be (difflib's ratio) to suggest the known one."""


def read_toml_file(path: Path) -> dict[str, Any]:
    """The keys of a TOML file; ConfigError when it cannot be read or is not TOML."""
    try:
        with path.open("rb") as stream:
            return tomllib.load(stream)
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}") from error
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from error


def read_toml_text(text: str, source: str) -> dict[str, Any]:
    """The keys of a TOML document received from `source`; ConfigError when it is not TOML."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{source}: not valid TOML: {error}") from error


class Table:
    """One TOML table; each key read is marked, and `finish` rejects the keys nobody read."""

    def __init__(self, values: dict[str, Any], source: str, name: str = "", base: Path | None = None) -> None:
        """`values` of the table called `name` (dotted; "" for the top level) in the file `source`; relative
        paths are resolved against `base` (None: left as written)."""
        self._values = values
        self._source = source
        self._name = name
        self._base = base
        self._where = f"{source} [{name}]" if name else source
        self._read: set[str] = set()
        self._asked: set[str] = set()
        """Keys looked for with `has`: known to this table, though not read when absent."""

    @classmethod
    def load(cls, path: Path) -> Table:
        """The top-level table of a TOML file."""
        return cls(read_toml_file(path), str(path), base=path.absolute().parent)

    def has(self, key: str) -> bool:
        """Whether the key is present (an absent one is still a key this table knows, for suggestions)."""
        self._asked.add(key)
        return key in self._values

    def table(self, key: str) -> Table:
        """A sub-table (an empty one when absent)."""
        value: dict[str, Any] = self._raw(key, dict, "a table") or {}
        return Table(value, self._source, f"{self._name}.{key}" if self._name else key, self._base)

    def names(self) -> tuple[str, ...]:
        """Every key of this table, in file order, all marked read (for tables keyed by the user's own
        names, such as named contexts)."""
        self._read.update(self._values)
        return tuple(self._values)

    def optional_table(self, key: str) -> Table | None:
        """A sub-table, or None when absent."""
        return self.table(key) if key in self._values else None

    def string(self, key: str, default: str | None = None) -> str:
        """A required string (or its default)."""
        return self._required(key, self.optional_string(key), default)

    def optional_string(self, key: str) -> str | None:
        """A string, or None when absent."""
        return self._raw(key, str, "a string")

    def integer(self, key: str, default: int | None = None) -> int:
        """A required integer (or its default)."""
        return self._required(key, self.optional_integer(key), default)

    def optional_integer(self, key: str) -> int | None:
        """An integer, or None when absent."""
        value = self._values.get(key)
        if isinstance(value, bool):
            raise self._wrong(key, "an integer")
        return self._raw(key, int, "an integer")

    def number(self, key: str, default: float | None = None) -> float:
        """A required finite number (or its default)."""
        return self._required(key, self.optional_number(key), default)

    def optional_number(self, key: str) -> float | None:
        """A finite number (integer or float), or None when absent."""
        self._read.add(key)
        value = self._values.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise self._wrong(key, "a finite number")
        return float(value)

    def boolean(self, key: str, default: bool) -> bool:
        """A boolean (or its default)."""
        value = self._raw(key, bool, "true or false")
        return default if value is None else value

    def strings(self, key: str, default: tuple[str, ...] | None = None) -> tuple[str, ...]:
        """A list of strings (or its default)."""
        value = self._raw(key, list, "a list of strings")
        if value is None:
            return self._required(key, None, default)
        if not all(isinstance(item, str) for item in value):
            raise self._wrong(key, "a list of strings")
        return tuple(value)

    def path(self, key: str) -> Path:
        """A required file or folder path (a relative one against the config file's folder)."""
        return self._resolved(Path(self.string(key)))

    def optional_path(self, key: str) -> Path | None:
        """A path (a relative one against the config file's folder), or None when absent."""
        value = self.optional_string(key)
        return None if value is None else self._resolved(Path(value))

    def parse(self, key: str, parser: Callable[[str], T], default: str | None = None) -> T:
        """A string turned into a value by `parser`; its ValueError becomes a ConfigError (listing the
        choices when `parser` is an enum)."""
        text = self.string(key, default)
        try:
            return parser(text)
        except ValueError as error:
            if isinstance(parser, type) and issubclass(parser, enum.Enum):
                choices = ", ".join(str(member.value) for member in parser)
                raise ConfigError(f"{self._where}: {key} = {text!r}: choose from {choices}") from error
            raise ConfigError(f"{self._where}: {key} = {text!r}: {error}") from error

    def finish(self) -> None:
        """Raise for keys that were never read (typos, or settings this process does not have)."""
        unknown = sorted(set(self._values) - self._read)
        if unknown:
            named = ", ".join(self._with_suggestion(key) for key in unknown)
            raise ConfigError(f"{self._where}: unknown key(s) {named}")

    def _with_suggestion(self, key: str) -> str:
        """`key`, and the known key it is probably a misspelling of."""
        known = sorted((self._read | self._asked) - set(self._values))
        close = difflib.get_close_matches(key, known, n=1, cutoff=SUGGESTION_CUTOFF)
        return f"{key} (did you mean {close[0]}?)" if close else key

    def _resolved(self, path: Path) -> Path:
        return path if self._base is None or path.is_absolute() else self._base / path

    def _raw(self, key: str, kind: type[T], description: str) -> T | None:
        self._read.add(key)
        if key not in self._values:
            return None
        value = self._values[key]
        if not isinstance(value, kind):
            raise self._wrong(key, description)
        return value

    def _required(self, key: str, value: T | None, default: T | None) -> T:
        if value is not None:
            return value
        if default is None:
            raise ConfigError(f"{self._where}: {key} is required")
        return default

    def _wrong(self, key: str, description: str) -> ConfigError:
        return ConfigError(f"{self._where}: {key} must be {description}, got {self._values[key]!r}")


def read_endpoint(table: Table, key: str, default: str | None = None) -> Endpoint:
    """A host:port value."""
    return table.parse(key, Endpoint.parse, default)


def read_tls(top: Table) -> TlsFiles | None:
    """The [tls] table (ca_cert, cert, key), or None when the file has none."""
    tls = top.optional_table("tls")
    if tls is None:
        return None
    files = TlsFiles(ca_cert=tls.path("ca_cert"), cert=tls.path("cert"), key=tls.path("key"))
    tls.finish()
    return files


def read_listener(top: Table, name: str, default: str) -> Endpoint:
    """`listen` of the table `name` (e.g. [health]); `default` when the table or key is absent."""
    table = top.table(name)
    endpoint = read_endpoint(table, "listen", default)
    table.finish()
    return endpoint


def read_optional_listener(top: Table, name: str) -> Endpoint | None:
    """`listen` of the table `name` (e.g. [metrics]), or None when the table is absent."""
    table = top.optional_table(name)
    if table is None:
        return None
    endpoint = read_endpoint(table, "listen")
    table.finish()
    return endpoint
