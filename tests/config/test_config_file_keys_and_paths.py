"""A config file's unknown key is named with the known key it resembles, and its relative paths name
places beside the file, whatever the working directory of the process that reads it."""

from __future__ import annotations

from pathlib import Path

import pytest

from aslora_core.config import ConfigError
from aslora_rpc.config_file import Table


def _load(folder: Path, text: str) -> Table:
    path = folder / "settings.toml"
    path.write_text(text)
    return Table.load(path)


def test_a_misspelled_key_is_named_with_the_key_it_resembles(tmp_path: Path) -> None:
    table = _load(tmp_path, "heartbeat_second = 5\n")
    table.number("heartbeat_seconds", 15.0)
    with pytest.raises(
        ConfigError, match=r"unknown key\(s\) heartbeat_second \(did you mean heartbeat_seconds\?\)"
    ):
        table.finish()


def test_a_key_like_no_known_one_gets_no_suggestion(tmp_path: Path) -> None:
    table = _load(tmp_path, "colour = 'blue'\n")
    table.number("heartbeat_seconds", 15.0)
    with pytest.raises(ConfigError, match=r"unknown key\(s\) colour$"):
        table.finish()


def test_relative_paths_resolve_against_the_files_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "configs"
    folder.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    table = _load(folder, "[data]\ntrain = 'shards/a.tsv'\nabsolute = '/srv/b.tsv'\nup = '../c.tsv'\n")
    data = table.table("data")
    assert data.path("train") == folder / "shards" / "a.tsv"
    assert data.path("absolute") == Path("/srv/b.tsv")
    assert data.optional_path("up") == folder / ".." / "c.tsv"
