"""Submitting runs to an idle coordinator service: a run file's mistakes end at the operator's machine
(exit 2, did-you-mean), a results file is never overwritten, and a valid run starts being served."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aslora_cli.federation_files import toml_text
from aslora_cli.main import app
from aslora_coordinator.config_loader import RUN_KEYS
from aslora_coordinator.service import CoordinatorService
from tests.grpc.helpers import coordinator_tables, load_config

USAGE_EXIT_CODE = 2
FAILED_EXIT_CODE = 1
START_TIMEOUT_SECONDS = 30.0
POLL_SECONDS = 0.1


@pytest.fixture
def idle(tiny_model_dir: Path, tmp_path: Path) -> Iterator[CoordinatorService]:
    """A coordinator service whose config holds no run."""
    tables = coordinator_tables(tiny_model_dir)
    service_only = {key: value for key, value in tables.items() if key not in RUN_KEYS and key != ""}
    service_only["server"] = {k: v for k, v in service_only["server"].items() if k != "linger_seconds"}
    config = load_config(tmp_path / "c.toml", service_only)
    service = CoordinatorService(config, tmp_path / "work", insecure=True)
    try:
        yield service
    finally:
        service.shutdown()


def _invoke(service: CoordinatorService, *arguments: str) -> tuple[int, str]:
    """The exit code, and the JSON on stdout (on success) or everything printed (on failure)."""
    connection = ["--address", str(service.server.endpoint), "--insecure", "-o", "json"]
    outcome = CliRunner().invoke(app, ["coordinator", *arguments, *connection])
    return outcome.exit_code, outcome.stdout if outcome.exit_code == 0 else outcome.output


def _run_file(path: Path, model_dir: Path, **evaluation: str) -> Path:
    tables = {k: v for k, v in coordinator_tables(model_dir).items() if k not in ("server", "health")}
    if evaluation:
        tables["evaluation"] = dict(evaluation)
    path.write_text(toml_text(tables))
    return path


def test_an_idle_service_serves_nothing_until_a_run_is_submitted(
    idle: CoordinatorService, tiny_model_dir: Path, tmp_path: Path
) -> None:
    assert idle.session is None
    code, output = _invoke(idle, "runs")
    assert (code, json.loads(output)) == (0, [])
    code, output = _invoke(idle, "status")
    assert code == FAILED_EXIT_CODE and "no run has started yet" in output
    code, output = _invoke(idle, "submit", str(_run_file(tmp_path / "run.toml", tiny_model_dir)))
    assert code == 0, output
    run_id = json.loads(output)["run_id"]
    give_up = time.monotonic() + START_TIMEOUT_SECONDS
    while idle.session is None:
        assert time.monotonic() < give_up, "the submitted run was not served"
        time.sleep(POLL_SECONDS)
    assert idle.orchestrator.plan.run_id == run_id
    code, output = _invoke(idle, "status")
    assert code == 0 and json.loads(output)["run_id"] == run_id


def test_a_misspelled_key_ends_at_the_operators_machine(idle: CoordinatorService, tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text('model_path = "/models/m"\nlabels = ["0", "1"]\n[federation]\npolcy = "aslora"\n')
    code, output = _invoke(idle, "submit", str(path))
    assert code == USAGE_EXIT_CODE and "Traceback" not in output
    assert "unknown key(s) polcy (did you mean policy?)" in output
    assert idle.queue.entries() == [], "nothing was sent"


def test_a_results_file_is_never_overwritten(
    idle: CoordinatorService, tiny_model_dir: Path, tmp_path: Path
) -> None:
    taken = tmp_path / "taken.json"
    taken.write_text("{}")
    code, output = _invoke(
        idle, "submit", str(_run_file(tmp_path / "run.toml", tiny_model_dir, results_path=str(taken)))
    )
    assert code == FAILED_EXIT_CODE and "INVALID_ARGUMENT" in output
    assert "results_path" in output and "exists or is another run's" in output
    assert taken.read_text() == "{}"
