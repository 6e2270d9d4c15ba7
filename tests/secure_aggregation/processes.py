"""A secure-aggregation federation of real processes over mutual TLS: one `aslora coordinator serve` (which
a test may crash at a point and restart on the same port and state folder) and four `aslora silo run`
agents, each pinning its peers' certificates; one round, which the operator holds (paused) until all four
registered; all on loopback and bounded in time."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from aslora_cli.federation_files import toml_text
from aslora_cli.main import app
from aslora_coordinator.crash_points import CRASH_EXIT_CODE, CRASH_POINT_ENV, CRASH_ROUND_ENV, CrashPoint
from aslora_rpc.certificates import certificate_fingerprint, load_certificate
from aslora_rpc.local_pki import LocalPki, create_local_pki, tls_table
from aslora_rpc.secure_aggregation.release_guard import JOURNAL_FILE as RELEASES_FILE
from aslora_rpc.settings_file import TomlValue
from aslora_silo.stall_point import STALL_ROUND_ENV
from tests.federation.processes import end, spawn, wait_for_port
from tests.grpc.helpers import coordinator_tables, silo_privacy_table, write_tsv

SILOS = ("silo-a", "silo-b", "silo-c", "silo-d")
SHARD_SIZE = 24
ROUNDS = 1
MIN_SILOS = 2
"""A round may complete with two updates (if t allows); the first opens only once all four registered."""
POLL_SECONDS = 0.2
SEED = 4
EVALUATION_RECORDS = 16
EVALUATION_OFFSET = 5000
ROUND_DEADLINE_SECONDS = 24.0
"""Long enough for a round of the tiny model on a busy machine; a stalled silo holds a round this long."""
HEARTBEAT_TIMEOUT_SECONDS = 4.0
START_TIMEOUT_SECONDS = 60.0
RUN_TIMEOUT_SECONDS = 240.0
EXIT_TIMEOUT_SECONDS = 30.0
Tables = dict[str, dict[str, TomlValue]]


class SecureFederation:
    """The coordinator and the four silos of one secure run in `work`."""

    def __init__(self, work: Path, model_dir: Path, **federation: Any) -> None:
        """`federation`: [federation] keys of the run beyond secure aggregation's."""
        self.work = work
        self.model_dir = model_dir
        self.pki: LocalPki = create_local_pki(work / "pki", SILOS)
        self.federation = federation
        self.port = 0
        self.coordinator: subprocess.Popen[bytes] | None = None
        self.silos: dict[str, subprocess.Popen[bytes]] = {}
        self.log = work / "coordinator.log"

    def pins(self, without: tuple[str, ...] = ()) -> dict[str, TomlValue]:
        """Every silo's certificate fingerprint, but those named in `without`."""
        return {
            name: certificate_fingerprint(load_certificate(files.cert.read_bytes()))
            for name, files in self.pki.silos.items()
            if name not in without
        }

    def start_coordinator(self, crash_at: CrashPoint | None = None) -> None:
        """Start (or restart, on the same port and state folder) the coordinator; with `crash_at`, it kills
        itself when it reaches that point in the first round."""
        tables: Tables = coordinator_tables(
            self.model_dir,
            rounds=ROUNDS,
            seed=SEED,
            min_silos=MIN_SILOS,
            secure_aggregation=True,
            round_deadline_seconds=ROUND_DEADLINE_SECONDS,
            heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT_SECONDS,
            **self.federation,
        )
        tables["server"] = {
            "listen": f"127.0.0.1:{self.port}",
            "port_file": str(self.work / "ports.json"),
            "max_wait_seconds": 1,
            "linger_seconds": 0,
        }
        tables["tls"] = dict(tls_table(self.pki.coordinator))
        tables["evaluation"] = {
            "data_path": str(write_tsv(self.work / "eval.tsv", EVALUATION_RECORDS, EVALUATION_OFFSET)),
            "max_length": 16,
            "results_path": str(self.work / "results.json"),
        }
        (self.work / "ports.json").unlink(missing_ok=True)
        (self.work / "coordinator.toml").write_text(toml_text(tables))
        crash = {} if crash_at is None else {CRASH_POINT_ENV: crash_at.value, CRASH_ROUND_ENV: "0"}
        command = ["coordinator", "serve", "--config", str(self.work / "coordinator.toml")]
        command += ["--state-dir", str(self.work / "coordinator")]
        self.coordinator = spawn(command, self.log, crash)
        self.port = wait_for_port(self.work / "ports.json", self.coordinator, self.log, START_TIMEOUT_SECONDS)

    def start(
        self,
        stall: tuple[str, ...] = (),
        unpinned: dict[str, tuple[str, ...]] | None = None,
        crash_at: CrashPoint | None = None,
    ) -> None:
        """The coordinator, paused by the operator until the four silos registered, then resumed: the
        first round is handed to all four (see `start_coordinator` and `start_silos`)."""
        self.start_coordinator(crash_at)
        give_up = time.monotonic() + START_TIMEOUT_SECONDS
        while self.admin("pause")["state"] is None:
            assert time.monotonic() < give_up, self.tail()
            time.sleep(POLL_SECONDS)
        self.start_silos(stall, unpinned)
        while not all(
            self.silo_log(name).exists() and "registered in run" in self.silo_log(name).read_text()
            for name in SILOS
        ):
            assert time.monotonic() < give_up + START_TIMEOUT_SECONDS, self.tail()
            time.sleep(POLL_SECONDS)
        self.admin("resume")

    def admin(self, *arguments: str) -> Any:
        """An operator command over mutual TLS; its JSON output."""
        files = self.pki.operator
        connection = ["--address", f"127.0.0.1:{self.port}", "--ca-cert", str(files.ca_cert)]
        connection += ["--cert", str(files.cert), "--key", str(files.key)]
        outcome = CliRunner().invoke(app, ["coordinator", *arguments, *connection, "-o", "json"])
        assert outcome.exit_code == 0, outcome.output + self.tail()
        return json.loads(outcome.stdout)

    def start_silos(
        self, stall: tuple[str, ...] = (), unpinned: dict[str, tuple[str, ...]] | None = None
    ) -> None:
        """The four silos; those in `stall` stop themselves once they have trained round 0 (after sharing
        their keys, before uploading); `unpinned` leaves peers out of a silo's pins."""
        for index, name in enumerate(SILOS):
            tables: Tables = {
                "": {"model_path": str(self.model_dir)},
                "silo": {"name": name},
                "coordinator": {"address": f"127.0.0.1:{self.port}"},
                "data": {"train_path": str(write_tsv(self.work / f"{name}.tsv", SHARD_SIZE, 1000 * index))},
                "training": {"physical_batch_size": 8, "max_length": 16},
                "privacy": silo_privacy_table(),
                "health": {"listen": "127.0.0.1:0"},
                "connection": {
                    "wait_seconds": 1,
                    "heartbeat_seconds": 1,
                    "initial_backoff_seconds": 0.1,
                    "max_backoff_seconds": 0.5,
                    "give_up_after_seconds": 120,
                },
                "tls": dict(tls_table(self.pki.silos[name])),
                "secure_aggregation.peers": self.pins((unpinned or {}).get(name, ())),
            }
            path = self.work / f"{name}.toml"
            path.write_text(toml_text(tables))
            command = ["silo", "run", "--config", str(path), "--state-dir", str(self.silo_dir(name))]
            command += ["--max-runs", "1"]
            extra = {STALL_ROUND_ENV: "0"} if name in stall else {}
            self.silos[name] = spawn(command, self.silo_log(name), extra)

    def silo_dir(self, name: str) -> Path:
        """A silo's state folder."""
        return self.work / f"{name}-state"

    def silo_log(self, name: str) -> Path:
        """A silo's log."""
        return self.work / f"{name}.log"

    def released(self, name: str) -> dict[str, dict[str, str]]:
        """A silo's share-release journal: per task id, the kind released of each peer's shares."""
        path = self.silo_dir(name) / RELEASES_FILE
        if not path.exists():
            return {}
        tasks: dict[str, dict[str, str]] = json.loads(path.read_text())["tasks"]
        return tasks

    def wait_coordinator(self, crashed: bool = False) -> None:
        """Until the coordinator has exited (the run over, or at its crash point)."""
        assert self.coordinator is not None
        try:
            code = self.coordinator.wait(RUN_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the coordinator did not exit:\n{self.tail()}") from None
        assert (code == CRASH_EXIT_CODE) == crashed, self.tail()

    def results(self) -> dict[str, Any]:
        """The run's results file."""
        document: dict[str, Any] = json.loads((self.work / "results.json").read_text())
        return document

    def tail(self) -> str:
        """The end of the coordinator's log and of each silo's."""
        parts = [f"--- coordinator\n{self.log.read_text()[-4000:]}"]
        parts += [
            f"--- {name}\n{self.silo_log(name).read_text()[-2000:]}"
            for name in self.silos
            if self.silo_log(name).exists()
        ]
        return "\n".join(parts)

    def close(self) -> None:
        """Kill whatever still runs (a stalled silo among them)."""
        end([*self.silos.values(), *([self.coordinator] if self.coordinator else [])])
