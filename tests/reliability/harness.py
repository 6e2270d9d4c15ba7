"""A small federation of real processes for the reliability tests: one `aslora coordinator serve` that the
tests kill and restart on the same port and --state-dir, and `aslora silo run` processes they kill,
pause and restart. Everything listens on loopback; every wait is bounded."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from aslora_cli.coordinator import STATE_SUBFOLDER
from aslora_cli.federation_files import coordinator_toml, silo_toml, toml_text, write_records
from aslora_coordinator.crash_points import CRASH_POINT_ENV, CRASH_ROUND_ENV
from aslora_coordinator.state import CoordinatorSnapshot, FileFederationStore, latest_run_checkpoint
from aslora_core.config import SimulationSettings
from aslora_core.simulation import load_records, partition_records, silo_ids
from aslora_core.tasks import make_task
from aslora_rpc.settings_file import TomlValue
from aslora_silo.ledger import LEDGER_FILE
from aslora_silo.rank_fault_point import RANK_KILL_ROUND_ENV
from aslora_silo.stall_point import STALL_ROUND_ENV
from aslora_silo.task_journal import JOURNAL_FILE
from tests.federation.processes import end, spawn, wait_for_port
from tests.grpc.helpers import coordinator_tables, silo_privacy_table, write_tsv

SHARD_SIZES = (40, 56, 72)
LOCAL_STEPS = 2
POLL_SECONDS = 0.05
START_TIMEOUT_SECONDS = 60.0
LINGER_SECONDS = 2
SILO_CONNECTION: dict[str, TomlValue] = {
    "wait_seconds": 1,
    "heartbeat_seconds": 1,
    "initial_backoff_seconds": 0.1,
    "max_backoff_seconds": 0.5,
    "give_up_after_seconds": 60,
}
"""Silos retry quickly and patiently enough to outlast a coordinator restart."""
Tables = dict[str, dict[str, TomlValue]]


class Federation:
    """The configs, processes and logs of one run in `work`."""

    def __init__(self, work: Path, coordinator: Tables, silos: list[Tables]) -> None:
        """`coordinator`, `silos`: config tables; the coordinator's port and the silos' address are set
        when the processes start."""
        self.work = work
        self.coordinator_log = work / "coordinator.log"
        self.coordinator: subprocess.Popen[bytes] | None = None
        self.silos: dict[int, subprocess.Popen[bytes]] = {}
        self.port = 0
        self.tables = coordinator
        self.tables["server"] = {
            **self.tables.get("server", {}),
            "listen": "127.0.0.1:0",
            "port_file": str(work / "ports.json"),
            "max_wait_seconds": 1,
            "linger_seconds": LINGER_SECONDS,
        }
        self.silo_tables = silos
        for tables in silos:
            tables["connection"] = {**tables.get("connection", {}), **SILO_CONNECTION}

    @classmethod
    def small(
        cls,
        work: Path,
        model_dir: Path,
        *,
        rounds: int,
        min_silos: int,
        deadline_seconds: float,
        seed: int = 3,
    ) -> Federation:
        """Three silos of SHARD_SIZES small texts; `min_silos` and the round deadline as given."""
        coordinator: Tables = coordinator_tables(
            model_dir, rounds=rounds, seed=seed, min_silos=min_silos, round_deadline_seconds=deadline_seconds
        )
        coordinator["training"] = {"local_steps": LOCAL_STEPS, "batch_size": 8, "lr": 0.5}
        coordinator["evaluation"] = {
            "data_path": str(write_tsv(work / "eval.tsv", 16, 5000)),
            "max_length": 16,
            "results_path": str(work / "results.json"),
        }
        silos: list[Tables] = [
            {
                "": {"model_path": str(model_dir)},
                "silo": {"name": silo_name(index)},
                "data": {"train_path": str(write_tsv(work / f"silo-{index}.tsv", size, 1000 * index))},
                "training": {"physical_batch_size": 8, "max_length": 16},
                "privacy": silo_privacy_table(),
                "health": {"listen": "127.0.0.1:0"},
            }
            for index, size in enumerate(SHARD_SIZES)
        ]
        return cls(work, coordinator, silos)

    @classmethod
    def of_simulation(cls, work: Path, settings: SimulationSettings) -> Federation:
        """The federation `aslora simulate --transport grpc` would run for `settings` (the same shards,
        the same coordinator and silo settings), in plaintext on loopback."""
        seed = settings.federation.seed
        train, evaluation = load_records(make_task(settings.task), settings.data, seed)
        parts = partition_records(train.labels, settings.partition, seed)
        model_path = str(settings.model_path)
        eval_path, fields = write_records(evaluation, work, "eval")
        coordinator = _tables(
            coordinator_toml(
                settings,
                model_path,
                train.label_names,
                eval_path,
                work / "results.json",
                work / "ports.json",
                fields,
                {},
            )
        )
        silos = []
        for silo_id, indices in zip(silo_ids(settings.partition.silos), parts, strict=True):
            shard, _ = write_records(train.subset(indices), work, silo_id)
            silos.append(
                _tables(silo_toml(settings, model_path, silo_id, shard, len(indices), 0, fields, {}))
            )
        return cls(work, coordinator, silos)

    # ---- the coordinator ---------------------------------------------------------------------------------

    def start_coordinator(self, crash_point: str | None = None, crash_round: int | None = None) -> None:
        """Start (or restart, on the port of the first start) the coordinator on the same --state-dir."""
        tables = dict(self.tables)
        if self.port:
            tables["server"] = {**tables["server"], "listen": f"127.0.0.1:{self.port}"}
        (self.work / "ports.json").unlink(missing_ok=True)
        (self.work / "coordinator.toml").write_text(toml_text(tables))
        env = {}
        if crash_point is not None:
            env[CRASH_POINT_ENV] = crash_point
        if crash_round is not None:
            env[CRASH_ROUND_ENV] = str(crash_round)
        with self.coordinator_log.open("a") as log:
            log.write(f"==== start (crash point {crash_point}, round {crash_round})\n")
        self.coordinator = spawn(
            [
                "coordinator",
                "serve",
                "--config",
                str(self.work / "coordinator.toml"),
                "--insecure",
                "--state-dir",
                str(self.work / "coordinator"),
            ],
            self.coordinator_log,
            env,
        )
        self.port = wait_for_port(
            self.work / "ports.json", self.coordinator, self.coordinator_log, START_TIMEOUT_SECONDS
        )

    def wait_coordinator_exit(self, timeout: float) -> int:
        """The coordinator's exit status, once it has exited."""
        assert self.coordinator is not None
        try:
            return self.coordinator.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the coordinator still runs after {timeout}s:\n{self.log_tail()}") from None

    def kill_coordinator(self) -> None:
        """SIGKILL: no handler, no cleanup."""
        assert self.coordinator is not None
        self.coordinator.kill()
        self.coordinator.wait()

    def checkpoint(self) -> CoordinatorSnapshot:
        """The coordinator's latest checkpoint, read as a restarted coordinator would."""
        snapshot = latest_run_checkpoint(FileFederationStore(self.work / "coordinator" / STATE_SUBFOLDER))
        assert snapshot is not None
        return snapshot

    def log_tail(self, characters: int = 4000) -> str:
        """The end of the coordinator's log and of each silo's, for failure messages."""
        parts = [f"---- coordinator\n{self.coordinator_log.read_text()[-characters:]}"]
        for index in sorted(self.silos):
            log = self.work / f"silo-{index}.log"
            text = log.read_text() if log.exists() else "(no log)"
            parts.append(f"---- silo {index}\n{text[-characters // 2 :]}")
        return "\n".join(parts)

    def wait_for_log(self, text: str, timeout: float) -> None:
        """Until the coordinator's log holds `text`."""
        wait_until(lambda: text in self.coordinator_log.read_text(), timeout, f"log line {text!r}", self)

    # ---- the silos ---------------------------------------------------------------------------------------

    def silo_dir(self, index: int) -> Path:
        """The silo's --state-dir (its privacy ledger and task journal)."""
        return self.work / f"silo-{index}"

    def start_silo(
        self, index: int, stall_round: int | None = None, rank_kill_round: int | None = None
    ) -> None:
        """Start (or restart on the same state folder) silo `index`; with `stall_round`, it stops itself
        (SIGSTOP) once it has trained that round, before sending the update; with `rank_kill_round`, a
        training rank other than its lead kills itself after that round's first step."""
        tables: Tables = {**self.silo_tables[index], "coordinator": {"address": f"127.0.0.1:{self.port}"}}
        path = self.work / f"silo-{index}.toml"
        path.write_text(toml_text(tables))
        command = [
            "silo",
            "run",
            "--config",
            str(path),
            "--insecure",
            "--state-dir",
            str(self.silo_dir(index)),
            "--max-runs",
            "1",
        ]
        env = {} if stall_round is None else {STALL_ROUND_ENV: str(stall_round)}
        if rank_kill_round is not None:
            env[RANK_KILL_ROUND_ENV] = str(rank_kill_round)
        self.silos[index] = spawn(command, self.work / f"silo-{index}.log", env)

    def signal_silo(self, index: int, number: signal.Signals) -> None:
        """Send a signal to silo `index` (SIGKILL waits for it to be gone)."""
        process = self.silos[index]
        process.send_signal(number)
        if number is signal.SIGKILL:
            process.wait()

    def wait_silo_stopped(self, index: int, timeout: float) -> None:
        """Until silo `index` has stopped itself at its stall point."""
        stat = Path(f"/proc/{self.silos[index].pid}/stat")
        # The state is the field after the parenthesised command name.
        wait_until(lambda: stat.read_text().rsplit(")", 1)[1].split()[0] == "T", timeout, "stall", self)

    def silo_ledger(self, index: int) -> dict[str, Any]:
        """The silo's own privacy ledger as it keeps it on disk, in the coordinator's layout: every event
        must be of this federation's one run, whose id the coordinator's ledger does not repeat."""
        document: dict[str, Any] = json.loads((self.silo_dir(index) / LEDGER_FILE).read_text())
        run_ids = {event.pop("run_id") for event in document["events"]}
        assert len(run_ids) <= 1, f"silo {index} charged several runs: {run_ids}"
        return document

    def has_charged(self, index: int, round_index: int) -> bool:
        """Whether the silo has recorded round `round_index` in its journal and charged its ledger."""
        journal, ledger = self.silo_dir(index) / JOURNAL_FILE, self.silo_dir(index) / LEDGER_FILE
        try:
            entry = json.loads(journal.read_text())
            steps = sum(event["steps"] for event in json.loads(ledger.read_text())["events"])
        except (OSError, ValueError, KeyError):
            return False
        charged_before = sum(event["steps"] for event in entry["ledger_before"]["events"])
        return bool(entry["round_index"] == round_index and steps > charged_before)

    def wait_silos_exit(self, timeout: float) -> None:
        """Every silo has left by itself, with status 0."""
        for index, process in self.silos.items():
            try:
                status = process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                raise AssertionError(f"silo {index} still runs:\n{self.log_tail()}") from None
            assert status == 0, (self.work / f"silo-{index}.log").read_text()[-3000:]

    def results(self) -> dict[str, Any]:
        """The coordinator's results JSON."""
        document: dict[str, Any] = json.loads((self.work / "results.json").read_text())
        return document

    def close(self) -> None:
        """Kill whatever still runs (a paused silo is continued first so that it can die)."""
        for process in self.silos.values():
            if process.poll() is None:
                process.send_signal(signal.SIGCONT)
        end([p for p in [self.coordinator, *self.silos.values()] if p is not None])


def silo_name(index: int) -> str:
    """The silo's name in the federation."""
    return f"silo-{index:02d}"


def wait_until(condition: Callable[[], bool], timeout: float, what: str, federation: Federation) -> None:
    """Poll `condition` until it holds; fail with the coordinator's log after `timeout` seconds."""
    give_up = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > give_up:
            raise AssertionError(f"no {what} after {timeout}s:\n{federation.log_tail()}")
        time.sleep(POLL_SECONDS)


def _tables(text: str) -> Tables:
    """A TOML document as `toml_text` takes it (one flat table per dotted name; no [tls]: plaintext)."""
    flat: Tables = {}

    def walk(prefix: str, table: Mapping[str, Any]) -> None:
        values = {k: v for k, v in table.items() if not isinstance(v, dict)}
        if values or not prefix:
            flat[prefix] = values
        for key, value in table.items():
            if isinstance(value, dict):
                walk(f"{prefix}.{key}" if prefix else key, value)

    walk("", tomllib.loads(text))
    flat.pop("tls", None)
    return flat
