"""A long-lived federation of real processes over mutual TLS: one `aslora coordinator serve` on a state
folder (killed and restarted when a test asks), two `aslora silo run` agents that serve run after run,
and the operator's commands, all on loopback and bounded in time."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from aslora_cli.federation_files import toml_text
from aslora_cli.main import app
from aslora_coordinator.crash_points import CRASH_EXIT_CODE, CRASH_POINT_ENV, CRASH_ROUND_ENV, CrashPoint
from aslora_core.config import DEFAULT_ACCOUNTANT
from aslora_core.privacy import PrivacyAccountant, PrivacyEvent, epsilon_spent
from aslora_core.privacy.planning import expected_sample_rate
from aslora_rpc.local_pki import LocalPki, create_local_pki, tls_table
from aslora_rpc.settings_file import TomlValue
from aslora_silo.ledger import LEDGER_FILE
from tests.federation.processes import end, spawn, wait_for_port
from tests.grpc.helpers import coordinator_tables, silo_privacy_table, write_tsv

SILO_NAMES = ("silo-a", "silo-b")
SHARD_SIZE = 40
ROUNDS = 2
LOCAL_STEPS = 2
BATCH_SIZE = 8
SIGMA = 1.0
DELTA = 1e-5
SEED = 5
START_TIMEOUT_SECONDS = 60.0
RUN_TIMEOUT_SECONDS = 240.0
EXIT_TIMEOUT_SECONDS = 30.0
POLL_SECONDS = 0.2
Tables = dict[str, dict[str, TomlValue]]


def run_epsilon(runs: float) -> float:
    """A silo's epsilon (default accountant, at DELTA) after `runs` whole runs of these settings."""
    rate = expected_sample_rate(BATCH_SIZE, SHARD_SIZE)
    steps = round(runs * ROUNDS * LOCAL_STEPS)
    return epsilon_spent([PrivacyEvent(SIGMA, rate, steps)], DELTA, DEFAULT_ACCOUNTANT)


def run_tables(
    model_dir: Path, results: Path, policy: str, *, rounds: int = ROUNDS, min_silos: int = 1
) -> Tables:
    """A run's settings (what its TOML holds): the tiny model, seeded noise, its own results file."""
    tables = coordinator_tables(model_dir, policy=policy, rounds=rounds, seed=SEED, min_silos=min_silos)
    tables["privacy"] = {"noise_multiplier": SIGMA, "delta": DELTA, "test_mode": True}
    tables["training"] = {"local_steps": LOCAL_STEPS, "batch_size": BATCH_SIZE, "lr": 0.5}
    tables["evaluation"] = {"results_path": str(results)}
    return {key: value for key, value in tables.items() if key not in ("server", "health")}


class LongLivedFederation:
    """The coordinator, the two silos and the operator's credentials of one federation in `work`."""

    def __init__(
        self, work: Path, model_dir: Path, first_run: Tables, silo_budgets: dict[str, float]
    ) -> None:
        self.work = work
        self.model_dir = model_dir
        self.pki: LocalPki = create_local_pki(work / "pki", SILO_NAMES)
        self.log = work / "coordinator.log"
        self.port = 0
        self.coordinator: subprocess.Popen[bytes] | None = None
        self.silos: dict[str, subprocess.Popen[bytes]] = {}
        self.first_run = first_run
        self.silo_budgets = silo_budgets

    # ---- processes ---------------------------------------------------------------------------------------

    def start_coordinator(self, crash_after_aggregating: int | None = None) -> None:
        """Start (or restart, on the first start's port and the same state folder) the coordinator; with
        `crash_after_aggregating`, it kills itself once it has aggregated that round (0-based) of a run."""
        listen = f"127.0.0.1:{self.port}"
        tables: Tables = {
            **self.first_run,
            "server": {"listen": listen, "port_file": str(self.work / "ports.json"), "max_wait_seconds": 1},
            "health": {"listen": "127.0.0.1:0"},
            "tls": dict(tls_table(self.pki.coordinator)),
        }
        (self.work / "ports.json").unlink(missing_ok=True)
        (self.work / "coordinator.toml").write_text(toml_text(tables))
        command = ["coordinator", "serve", "--config", str(self.work / "coordinator.toml")]
        crash = (
            {}
            if crash_after_aggregating is None
            else {
                CRASH_POINT_ENV: CrashPoint.AFTER_AGGREGATION.value,
                CRASH_ROUND_ENV: str(crash_after_aggregating),
            }
        )
        command += ["--state-dir", str(self.work / "coordinator")]
        self.coordinator = spawn(command, self.log, crash)
        self.port = wait_for_port(self.work / "ports.json", self.coordinator, self.log, START_TIMEOUT_SECONDS)

    def kill_coordinator(self) -> None:
        """SIGKILL: no shutdown, no last checkpoint."""
        assert self.coordinator is not None
        self.coordinator.send_signal(signal.SIGKILL)
        self.coordinator.wait(EXIT_TIMEOUT_SECONDS)

    def wait_coordinator_crash(self) -> None:
        """Until the coordinator has killed itself at its crash point."""
        assert self.coordinator is not None
        try:
            code = self.coordinator.wait(RUN_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the coordinator did not crash:\n{self.tail()}") from None
        assert code == CRASH_EXIT_CODE, self.tail()

    def start_silos(self, max_runs: dict[str, int]) -> None:
        """Both silos, each serving its `max_runs` runs (taken part in or declined) before it exits."""
        for index, name in enumerate(SILO_NAMES):
            self.start_silo(
                name, max_runs[name], write_tsv(self.work / f"{name}.tsv", SHARD_SIZE, 1000 * index)
            )

    def start_silo(
        self, name: str, max_runs: int, data: Path, extra_env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """One silo on its training file `data`, serving `max_runs` runs before it exits."""
        tables: Tables = {
            "": {"model_path": str(self.model_dir)},
            "silo": {"name": name},
            "coordinator": {"address": f"127.0.0.1:{self.port}"},
            "data": {"train_path": str(data)},
            "training": {"physical_batch_size": 8, "max_length": 16},
            "privacy": silo_privacy_table(max_epsilon=self.silo_budgets[name]),
            "health": {"listen": "127.0.0.1:0"},
            "connection": {
                "wait_seconds": 1,
                "heartbeat_seconds": 1,
                "initial_backoff_seconds": 0.1,
                "max_backoff_seconds": 0.5,
                "give_up_after_seconds": 120,
            },
            "tls": dict(tls_table(self.pki.silos[name])),
        }
        path = self.work / f"{name}.toml"
        path.write_text(toml_text(tables))
        command = ["silo", "run", "--config", str(path), "--state-dir", str(self.silo_dir(name))]
        command += ["--max-runs", str(max_runs)]
        self.silos[name] = spawn(command, self.work / f"{name}.log", extra_env)
        return self.silos[name]

    def wait_silos(self) -> None:
        """Until every silo has exited by itself, successfully."""
        for name, process in self.silos.items():
            try:
                code = process.wait(timeout=RUN_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                raise AssertionError(f"{name} did not finish:\n{self.tail()}") from None
            assert code == 0, f"{name} exited with {code}:\n{self.tail(name)}"

    def close(self) -> None:
        """Kill whatever still runs."""
        end([*self.silos.values(), *([self.coordinator] if self.coordinator else [])])

    def silo_dir(self, name: str) -> Path:
        """A silo's state folder (its lifetime ledger)."""
        return self.work / f"{name}-state"

    def silo_ledger(self, name: str) -> PrivacyAccountant:
        """A silo's lifetime ledger as it keeps it on disk."""
        return PrivacyAccountant.load(self.silo_dir(name) / LEDGER_FILE, DEFAULT_ACCOUNTANT)

    def tail(self, name: str | None = None) -> str:
        """The end of the coordinator's log, or of a silo's."""
        log = self.log if name is None else self.work / f"{name}.log"
        return log.read_text()[-4000:] if log.exists() else ""

    # ---- the operator -----------------------------------------------------------------------------------

    def operator_options(self) -> list[str]:
        """The options of an operator command that connect it to the coordinator over mutual TLS."""
        files = self.pki.operator
        connection = ["--address", f"127.0.0.1:{self.port}", "--ca-cert", str(files.ca_cert)]
        return [*connection, "--cert", str(files.cert), "--key", str(files.key)]

    def admin(self, *arguments: str) -> Any:
        """An operator command over mutual TLS; its JSON output."""
        connection = self.operator_options()
        outcome = CliRunner().invoke(app, ["coordinator", *arguments, *connection, "-o", "json"])
        assert outcome.exit_code == 0, outcome.output + self.tail()
        return json.loads(outcome.stdout)

    def submit(self, tables: Tables, name: str) -> str:
        """Submit a run file; its run id."""
        path = self.work / name
        path.write_text(toml_text(tables))
        run_id: str = self.admin("submit", str(path))["run_id"]
        return run_id

    def runs(self) -> dict[str, dict[str, Any]]:
        """Every submitted run by id."""
        return {run["run_id"]: run for run in self.admin("runs")}

    def wait_for(self, condition: Callable[[], bool], what: str) -> None:
        """Poll until `condition` holds, bounded."""
        give_up = time.monotonic() + RUN_TIMEOUT_SECONDS
        while not condition():
            assert time.monotonic() < give_up, f"no {what} after {RUN_TIMEOUT_SECONDS}s:\n{self.tail()}"
            time.sleep(POLL_SECONDS)
