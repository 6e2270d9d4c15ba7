"""Where an operator command finds the coordinator: its options, else the ASLORA_* environment variables,
else the current (or chosen) context of the operator's context file, whose relative paths are the file's."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from aslora_cli.admin_connection import (
    ADDRESS_ENV,
    CA_ENV,
    DEFAULT_ADDRESS,
    AdminConnection,
    with_connection_options,
)
from aslora_cli.operator_context import CONFIG_HOME_ENV, CONTEXT_ENV

USAGE_EXIT_CODE = 2
CONTEXT_TEXT = """current = "lab"
[contexts.lab]
address = "lab.example.org:7443"
ca_cert = "pki/ca.crt"
cert = "pki/alice.crt"
key = "pki/alice.key"
[contexts.prod]
address = "prod.example.org:7443"
"""


def _resolved(arguments: list[str], env: dict[str, str]) -> AdminConnection:
    """The connection a command decorated with the connection options receives."""
    seen: list[AdminConnection] = []
    app = typer.Typer()

    @app.command()
    @with_connection_options
    def probe(connection: AdminConnection) -> None:
        seen.append(connection)

    outcome = CliRunner().invoke(app, arguments, env=env)
    assert outcome.exit_code == 0, outcome.output
    return seen[0]


@pytest.fixture
def context_file(tmp_path: Path) -> Path:
    path = tmp_path / "ctx" / "context.toml"
    path.parent.mkdir()
    path.write_text(CONTEXT_TEXT)
    return path


@pytest.fixture(autouse=True)
def no_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No ASLORA_* variable of the machine running the tests, and an empty config home."""
    for name in (ADDRESS_ENV, CA_ENV, CONTEXT_ENV, "ASLORA_CERT", "ASLORA_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(CONFIG_HOME_ENV, str(tmp_path / "config-home"))


def test_without_a_context_the_default_address_is_used() -> None:
    connection = _resolved([], {})
    assert connection.address == DEFAULT_ADDRESS and connection.tls() is None


def test_the_current_context_gives_the_address_and_tls_files_beside_it(context_file: Path) -> None:
    connection = _resolved([], {CONTEXT_ENV: str(context_file)})
    assert connection.address == "lab.example.org:7443"
    assert connection.ca_cert == context_file.parent / "pki" / "ca.crt"
    assert connection.key == context_file.parent / "pki" / "alice.key"


def test_the_context_in_the_config_home_is_found(context_file: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "aslora").mkdir(parents=True)
    (home / "aslora" / "context.toml").write_text(context_file.read_text())
    assert _resolved([], {CONFIG_HOME_ENV: str(home)}).address == "lab.example.org:7443"


def test_the_environment_overrides_the_context_and_an_option_the_environment(context_file: Path) -> None:
    env = {CONTEXT_ENV: str(context_file), ADDRESS_ENV: "env.example.org:7443", CA_ENV: "/etc/ca.crt"}
    from_env = _resolved([], env)
    assert from_env.address == "env.example.org:7443"
    assert from_env.ca_cert == Path("/etc/ca.crt")
    assert from_env.cert == context_file.parent / "pki" / "alice.crt"
    assert _resolved(["--address", "flag.example.org:1"], env).address == "flag.example.org:1"


def test_another_context_is_chosen_by_name(context_file: Path) -> None:
    connection = _resolved(["--context", "prod"], {CONTEXT_ENV: str(context_file)})
    assert connection.address == "prod.example.org:7443" and connection.ca_cert is None


def test_an_unknown_context_is_named_with_those_the_file_has(context_file: Path) -> None:
    app = typer.Typer()

    @app.command()
    @with_connection_options
    def probe(connection: AdminConnection) -> None:
        raise AssertionError("not reached")

    outcome = CliRunner().invoke(app, ["--context", "staging"], env={CONTEXT_ENV: str(context_file)})
    assert "no context 'staging'; the file has lab, prod" in str(outcome.exception)
