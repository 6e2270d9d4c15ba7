"""`aslora --version` prints the distribution's name and its installed version, the one in pyproject.toml."""

from __future__ import annotations

import tomllib
from importlib.metadata import version
from pathlib import Path

from typer.testing import CliRunner

from aslora_cli.main import app

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_version_prints_the_distribution_and_its_installed_version() -> None:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    outcome = CliRunner().invoke(app, ["--version"])
    assert outcome.exit_code == 0, outcome.output
    assert outcome.output == f"{project['name']} {project['version']}\n"
    assert version(project["name"]) == project["version"]
