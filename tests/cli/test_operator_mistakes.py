"""Each mistake an operator or an institution makes ends the `aslora` process with a short message that
names the cause and its fix, exit status 2 and no traceback (which `--debug` brings back). Every test runs
the program as a real process."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aslora_cli.federation_files import toml_text
from aslora_coordinator.config import SecuritySettings, ServerSettings
from aslora_coordinator.server import RunningServer, start_server
from aslora_rpc.endpoints import Endpoint
from aslora_rpc.local_pki import create_local_pki, tls_files, tls_table
from tests.grpc.helpers import coordinator_tables, write_tsv

MISTAKE_EXIT_CODE = 2
RUN_TIMEOUT_SECONDS = 120.0
SILO = "silo-a"
RECORDS = 8
UNREACHABLE_COORDINATOR = "127.0.0.1:1"
"""Nothing listens on port 1: the silo's checks find no coordinator and go on without it."""
TRACEBACK = "Traceback"


def _aslora(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aslora_cli", *arguments],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_SECONDS,
        check=False,
    )


def _refused(outcome: subprocess.CompletedProcess[str], *causes: str) -> None:
    """The process ended on a mistake: exit 2, no traceback, every cause named."""
    assert outcome.returncode == MISTAKE_EXIT_CODE, outcome.stdout + outcome.stderr
    assert TRACEBACK not in outcome.stderr, outcome.stderr
    for cause in causes:
        assert cause in outcome.stdout + outcome.stderr, outcome.stdout + outcome.stderr


def _silo_tables(model: Path, train: Path, **privacy: Any) -> dict[str, dict[str, Any]]:
    return {
        "": {"model_path": str(model)},
        "silo": {"name": SILO},
        "coordinator": {"address": UNREACHABLE_COORDINATOR},
        "data": {"train_path": str(train)},
        "privacy": {"max_epsilon": 8.0, **privacy},
        "health": {"listen": "127.0.0.1:0"},
    }


def _write(path: Path, tables: dict[str, dict[str, Any]]) -> Path:
    path.write_text(toml_text(tables))
    return path


@pytest.fixture
def train(tmp_path: Path) -> Path:
    """A well-formed training file of RECORDS labelled texts."""
    return write_tsv(tmp_path / "train.tsv", RECORDS)


@pytest.fixture
def plan(tiny_model_dir: Path, tmp_path: Path) -> Path:
    """A run's config file: two labels, 3 rounds of 2 steps in batches of 8, noise multiplier 1, no test
    mode (which the silos here do not declare)."""
    tables = coordinator_tables(tiny_model_dir)
    tables["privacy"]["test_mode"] = False
    return _write(tmp_path / "run.toml", tables)


def test_a_wrong_policy_name_lists_the_policies(tiny_model_dir: Path, tmp_path: Path) -> None:
    tables = coordinator_tables(tiny_model_dir, policy="asloraa")
    config = _write(tmp_path / "coordinator.toml", tables)
    outcome = _aslora("coordinator", "serve", "--config", str(config), "--insecure")
    _refused(outcome, "unknown policy 'asloraa'; choose from aslora")


def test_a_misspelled_key_is_named_with_the_key_it_resembles(
    tiny_model_dir: Path, train: Path, tmp_path: Path
) -> None:
    tables = _silo_tables(tiny_model_dir, train)
    tables["connection"] = {"heartbeat_second": 5}
    outcome = _aslora("silo", "run", "--config", str(_write(tmp_path / "silo.toml", tables)), "--insecure")
    _refused(outcome, "unknown key(s) heartbeat_second (did you mean heartbeat_seconds?)", "fix:")


def test_the_traceback_is_shown_with_debug(tiny_model_dir: Path, train: Path, tmp_path: Path) -> None:
    tables = _silo_tables(tiny_model_dir, train)
    tables["connection"] = {"heartbeat_second": 5}
    config = _write(tmp_path / "silo.toml", tables)
    outcome = _aslora("--debug", "silo", "run", "--config", str(config), "--insecure")
    assert outcome.returncode != 0
    assert TRACEBACK in outcome.stderr


def test_a_missing_data_file_is_named(tiny_model_dir: Path, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-train.tsv"
    config = _write(tmp_path / "silo.toml", _silo_tables(tiny_model_dir, missing))
    outcome = _aslora("silo", "run", "--config", str(config), "--insecure")
    _refused(outcome, "data: No such file or directory", str(missing))


def test_an_empty_data_file_is_named(tiny_model_dir: Path, tmp_path: Path) -> None:
    empty = tmp_path / "train.tsv"
    empty.write_text("")
    config = _write(tmp_path / "silo.toml", _silo_tables(tiny_model_dir, empty))
    outcome = _aslora("silo", "run", "--config", str(config), "--insecure")
    _refused(outcome, f"{empty} is empty")


def test_a_label_outside_the_runs_labels_is_named_by_line(
    tiny_model_dir: Path, train: Path, plan: Path, tmp_path: Path
) -> None:
    with train.open("a", encoding="utf-8") as stream:
        stream.write("maybe\ta film of some kind\n")
    bad_line = RECORDS + 2
    config = _write(tmp_path / "silo.toml", _silo_tables(tiny_model_dir, train))
    outcome = _aslora("silo", "check", "--config", str(config), "--plan", str(plan), "--insecure")
    _refused(outcome, f"the label at line {bad_line} is not one of the label names ['0', '1']", "fix:")


def test_a_port_in_use_is_named_with_its_address(tiny_model_dir: Path, train: Path, tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = f"127.0.0.1:{holder.getsockname()[1]}"
        tables = _silo_tables(tiny_model_dir, train)
        tables["health"] = {"listen": taken}
        config = _write(tmp_path / "silo.toml", tables)
        outcome = _aslora("silo", "run", "--config", str(config), "--insecure")
    _refused(outcome, f"cannot listen on {taken}: the address is already in use")


def test_a_dashboard_off_loopback_is_refused_before_it_connects() -> None:
    outcome = _aslora(
        "coordinator", "dashboard", "--listen", "0.0.0.0:0", "--address", UNREACHABLE_COORDINATOR
    )
    _refused(outcome, "--listen 0.0.0.0:0", "loopback addresses only", "ssh -L")


def test_a_dashboard_on_a_port_in_use_is_refused_before_it_connects() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = f"127.0.0.1:{holder.getsockname()[1]}"
        outcome = _aslora("coordinator", "dashboard", "--listen", taken, "--address", UNREACHABLE_COORDINATOR)
    _refused(outcome, f"cannot listen on {taken}: the address is already in use", "ssh -L")


def test_a_certificate_of_another_name_is_refused(tiny_model_dir: Path, train: Path, tmp_path: Path) -> None:
    pki = create_local_pki(tmp_path / "pki", ["silo-b"])
    tables = _silo_tables(tiny_model_dir, train)
    tables["tls"] = tls_table(pki.silos["silo-b"])
    outcome = _aslora("silo", "check", "--config", str(_write(tmp_path / "silo.toml", tables)))
    _refused(outcome, "names 'silo-b' (its CN), but this process is 'silo-a'")


def test_a_key_of_another_certificate_is_refused(tiny_model_dir: Path, train: Path, tmp_path: Path) -> None:
    pki = create_local_pki(tmp_path / "pki", [SILO, "silo-b"])
    tables = _silo_tables(tiny_model_dir, train)
    tables["tls"] = {**tls_table(pki.silos[SILO]), "key": str(pki.silos["silo-b"].key)}
    outcome = _aslora("silo", "run", "--config", str(_write(tmp_path / "silo.toml", tables)))
    _refused(outcome, f"{pki.silos['silo-b'].key} does not fit {pki.silos[SILO].cert}")


def test_a_silo_whose_budget_cannot_pay_one_round_is_told_the_cost(
    tiny_model_dir: Path, train: Path, plan: Path, tmp_path: Path
) -> None:
    config = _write(tmp_path / "silo.toml", _silo_tables(tiny_model_dir, train, max_epsilon=0.5))
    outcome = _aslora("silo", "check", "--config", str(config), "--plan", str(plan), "--insecure")
    _refused(outcome, "budget", "the budget cannot pay one round (a round costs epsilon", "budget 0.5")


def test_the_same_silo_with_budget_enough_passes(
    tiny_model_dir: Path, train: Path, plan: Path, tmp_path: Path
) -> None:
    config = _write(tmp_path / "silo.toml", _silo_tables(tiny_model_dir, train, max_epsilon=1000.0))
    outcome = _aslora("silo", "check", "--config", str(config), "--plan", str(plan), "--insecure")
    assert outcome.returncode == 0, outcome.stdout + outcome.stderr
    assert "pays the whole run" in outcome.stdout


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[RunningServer]:
    """A server with mutual TLS on loopback (its health service only)."""
    pki = create_local_pki(tmp_path / "pki", [])
    settings = ServerSettings(
        listen=Endpoint("127.0.0.1", 0), health=Endpoint("127.0.0.1", 0), tls=tls_files(pki.coordinator)
    )
    server = start_server(settings, SecuritySettings(), [], insecure=False)
    try:
        yield server
    finally:
        server.stop(0)


def test_a_plaintext_client_is_told_that_mutual_tls_is_required(tls_server: RunningServer) -> None:
    outcome = _aslora("coordinator", "status", "--insecure", "--address", str(tls_server.endpoint))
    _refused(outcome, f"the coordinator at {tls_server.endpoint} requires mutual TLS", "--ca-cert")
