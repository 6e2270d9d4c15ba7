"""`aslora coordinator serve` refuses an unsafe config file with a usage error naming the key, before it
builds the service (which loads the model): a score without the clipping it needs, an unknown policy, a
missing deny list."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from aslora_cli.federation_files import toml_text
from aslora_cli.main import app
from aslora_coordinator import service
from aslora_core.policy_traits import POLICY_NAMES
from aslora_rpc.certificates import create_ca
from tests.grpc.helpers import coordinator_tables

USAGE_EXIT_CODE = 2
"""Click's exit status for a bad parameter."""
WIDE_TERMINAL = {"COLUMNS": "1000"}
"""The error box is wrapped at the terminal's width; a wide one keeps each message on one line."""


class ServiceBuiltError(Exception):
    """Raised instead of building the coordinator service (and loading its model)."""


@pytest.fixture(autouse=True)
def no_service(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stop the command where it would build the coordinator service: a refused config never gets there."""

    def stop(*args: object, **kwargs: object) -> None:
        raise ServiceBuiltError

    monkeypatch.setattr(service, "CoordinatorService", stop)


def _serve(tables: dict[str, dict[str, Any]], folder: Path) -> Result:
    """Write `tables` as the config file and run `aslora coordinator serve` on it."""
    config = folder / "coordinator.toml"
    config.write_text(toml_text(tables))
    arguments = ["coordinator", "serve", "--config", str(config), "--insecure"]
    return CliRunner().invoke(app, arguments, env=WIDE_TERMINAL)


def _tables_without_a_model(folder: Path) -> dict[str, dict[str, Any]]:
    """A coordinator config whose model folder exists but holds no model."""
    model = folder / "no-model"
    model.mkdir()
    return coordinator_tables(model)


def test_a_hybrid_score_with_trained_clipping_is_refused_before_the_model_loads(tmp_path: Path) -> None:
    tables = _tables_without_a_model(tmp_path)
    tables["federation.score"] = {"estimator": "hybrid"}
    outcome = _serve(tables, tmp_path)
    assert outcome.exit_code == USAGE_EXIT_CODE, outcome.output
    assert '[federation.score] estimator = "hybrid"' in outcome.output
    assert '[privacy] clipping = "joint"' in outcome.output


def test_an_unknown_policy_is_refused_before_the_model_loads(tmp_path: Path) -> None:
    tables = _tables_without_a_model(tmp_path)
    tables["federation"]["policy"] = "asloraa"
    outcome = _serve(tables, tmp_path)
    assert outcome.exit_code == USAGE_EXIT_CODE, outcome.output
    assert f"unknown policy 'asloraa'; choose from {', '.join(POLICY_NAMES)}" in outcome.output


def test_a_missing_revocation_list_is_refused_before_the_model_loads(tmp_path: Path) -> None:
    missing = tmp_path / "pki" / "revoked.json"
    tables = _tables_without_a_model(tmp_path)
    tables["security"] = {"revocation_list": str(missing)}
    outcome = _serve(tables, tmp_path)
    assert outcome.exit_code == USAGE_EXIT_CODE, outcome.output
    assert f'[security] revocation_list = "{missing}": no such file' in outcome.output


def test_the_deny_list_of_a_fresh_ca_gets_the_config_through(tmp_path: Path) -> None:
    """`certs init` writes the deny list, so the documented config reaches the service."""
    ca = create_ca(tmp_path / "pki")
    tables = _tables_without_a_model(tmp_path)
    tables["security"] = {"revocation_list": str(ca.revoked)}
    outcome = _serve(tables, tmp_path)
    assert isinstance(outcome.exception, ServiceBuiltError), outcome.output
