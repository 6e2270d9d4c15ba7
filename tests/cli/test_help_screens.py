"""Every command's help screen shows a placeholder for an option's value, not a Python type: a flag shows
none (typer would print `<bool>`), a repeatable option names one value (not `<list[str]>`)."""

from __future__ import annotations

import re

import typer
from typer.core import TyperGroup
from typer.testing import CliRunner

from aslora_cli.main import app

WIDE_TERMINAL = {"COLUMNS": "200"}
"""Help screens are wrapped at the terminal's width; a wide one keeps each option's placeholder on the line
that names the option."""
OPTION_LINE = re.compile(r"^\W*--[a-z]")
"""A line of an options panel that names an option (after the frame, and `*` when required)."""
TYPER_HELP_OPTION = "--help"
"""Typer's own help flag, which still shows `<bool>`: its declaration is typer's, not ours."""


def _command_paths(command: object, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [path]
    if isinstance(command, TyperGroup):
        for name, sub in command.commands.items():
            paths += _command_paths(sub, (*path, name))
    return paths


def _option_lines(path: tuple[str, ...]) -> list[str]:
    outcome = CliRunner().invoke(app, [*path, "--help"], env=WIDE_TERMINAL)
    assert outcome.exit_code == 0, outcome.output
    return [line for line in outcome.output.splitlines() if OPTION_LINE.match(line)]


def test_no_option_shows_a_python_type_for_its_value() -> None:
    paths = _command_paths(typer.main.get_command(app))
    assert ("coordinator", "export") in paths
    shown = {path: _option_lines(path) for path in paths}
    flags = [line for lines in shown.values() for line in lines if "<bool>" in line]
    assert all(TYPER_HELP_OPTION in line for line in flags), flags
    lists = [line for lines in shown.values() for line in lines if "<list[" in line]
    assert lists == []
