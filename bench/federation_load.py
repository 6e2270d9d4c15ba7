"""Load: many lightweight silos (threads speaking the real protocol) against one `aslora coordinator
serve` process on loopback, for a few rounds. Each silo registers, takes its task, downloads the global
adapter and uploads a valid synthetic update (the global factors it was asked to train plus small seeded
noise, its dataset size as weight). The report says whether every update was accounted for (accepted,
aggregated, charged) and the coordinator's peak resident memory (VmHWM).

    .venv/bin/python -m bench.federation_load --silos 100 --rounds 5 --work /tmp/load

Defaults: the MiniLM model the project ships; `--model` takes any local model folder; the project's default
accountant (`--accountant rdp` or `prv`); no epsilon budget (`--max-epsilon` sets one, so that the
coordinator also checks each task against it before handing it out).
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import torch

from aslora.v1 import federation_pb2 as pb
from aslora.v1 import federation_pb2_grpc
from aslora_cli.coordinator import STATE_SUBFOLDER
from aslora_cli.federation_files import toml_text
from aslora_coordinator.state import FileFederationStore, latest_run_checkpoint
from aslora_core.adapters import default_model_path
from aslora_core.config import DEFAULT_ACCOUNTANT, AccountantKind
from aslora_core.factors import AdapterState, SiloUpdate
from aslora_core.fingerprint import base_model_fingerprint
from aslora_core.privacy import PrivacyAccountant
from aslora_core.serialization import state_from_bytes, update_to_bytes
from aslora_rpc import wire
from aslora_rpc.messages import Registration, RunEnd, Task, UploadAnnouncement
from aslora_rpc.options import channel_options
from aslora_rpc.protocol import PROTOCOL_VERSION
from aslora_rpc.settings_file import TomlValue
from aslora_rpc.transfer import PayloadInfo

REPO = Path(__file__).resolve().parents[1]
LOCAL_STEPS = 2
BASE_DATASET_SIZE = 32
NOISE_SCALE = 1e-3
"""Synthetic updates move each trained tensor by this times its own scale: valid, small, non-trivial."""
WAIT_SECONDS = 2.0
CALL_TIMEOUT_SECONDS = 60.0
START_TIMEOUT_SECONDS = 120.0
EXTRA_WORKERS = 32
"""Server threads beyond one per silo (each long poll holds one)."""
UPLOAD_CHUNK_BYTES = 64 * 1024
POLL_SECONDS = 0.1
STAT_UTIME = 11
STAT_STIME = 12
"""utime and stime in /proc/PID/stat after the ")" that ends the command name (fields 14 and 15)."""
KIB = 1024
ROUND_OPEN_MARK = " open for "
"""The coordinator's log line of a round attempt opening."""


@dataclass
class LoadReport:
    """What a load run shows."""

    silos: int
    rounds: int
    seconds: float
    accepted: dict[str, list[int]] = field(default_factory=dict)
    """Per silo, the round index of each of its updates the coordinator accepted."""
    errors: list[str] = field(default_factory=list)
    rounds_completed: int = 0
    participations: dict[str, int] = field(default_factory=dict)
    ledger_steps: dict[str, int] = field(default_factory=dict)
    deadline_closes: int = 0
    peak_rss_bytes: int = 0
    coordinator_cpu_seconds: float = 0.0
    """CPU time (user + system) the coordinator spent from the moment it listened to the run's end."""
    serving_seconds: float = 0.0
    """Wall time over the same span."""
    round_cpu_seconds: list[float] = field(default_factory=list)
    """The coordinator's CPU time from each round's opening to the next's (the last: to the run's end)."""

    @property
    def steady_cpu_seconds_per_round(self) -> float:
        """Median CPU time of the rounds after the first, which alone computes each silo's per-step RDP
        (cached from then on) and warms the server up."""
        later = self.round_cpu_seconds[1:]
        return statistics.median(later) if later else float("nan")

    @property
    def every_update_accounted_for(self) -> bool:
        """Each silo had one update accepted per round, and each was aggregated and charged once."""
        everyone = [f"load-{i:03d}" for i in range(self.silos)]
        rounds = list(range(self.rounds))
        return (
            not self.errors
            and self.rounds_completed == self.rounds
            and self.deadline_closes == 0
            and all(sorted(self.accepted.get(s, [])) == rounds for s in everyone)
            and all(self.participations.get(s) == self.rounds for s in everyone)
            and all(self.ledger_steps.get(s) == self.rounds * LOCAL_STEPS for s in everyone)
        )


def synthetic_update(silo_id: str, weight: float, state: AdapterState, task: Task, seed: int) -> SiloUpdate:
    """The global factors the task selects and the head, each moved by small seeded noise."""
    generator = torch.Generator().manual_seed(seed)

    def moved(tensor: torch.Tensor) -> torch.Tensor:
        scale = float(tensor.abs().mean()) or 1.0
        noise = torch.randn(tensor.shape, generator=generator, dtype=torch.float64) * scale * NOISE_SCALE
        return (tensor.double() + noise).to(tensor.dtype)

    return SiloUpdate(
        silo_id=silo_id,
        weight=weight,
        factors={
            layer: {which: moved(state.layers[layer].factor(which)) for which in choice.factors}
            for layer, choice in task.selection.items()
        },
        head={name: moved(tensor) for name, tensor in state.head.items()},
    )


class LoadSilo(threading.Thread):
    """One silo: register, then task, download, upload until the run ends."""

    def __init__(
        self, index: int, target: str, fingerprint: str, report: LoadReport, lock: threading.Lock
    ) -> None:
        super().__init__(name=f"load-silo-{index}", daemon=True)
        self.silo_id = f"load-{index:03d}"
        self.index = index
        self.target = target
        self.fingerprint = fingerprint
        self.report = report
        self.lock = lock

    def run(self) -> None:
        try:
            with grpc.insecure_channel(self.target, options=channel_options()) as channel:
                self._work(federation_pb2_grpc.FederationStub(channel))
        except Exception as error:
            with self.lock:
                self.report.errors.append(f"{self.silo_id}: {type(error).__name__}: {error}")

    def _work(self, stub: federation_pb2_grpc.FederationStub) -> None:
        size = BASE_DATASET_SIZE + self.index
        offer = stub.GetRun(pb.GetRunRequest(wait_seconds=WAIT_SECONDS), timeout=CALL_TIMEOUT_SECONDS)
        run_id = offer.plan.run_id
        registration = Registration(PROTOCOL_VERSION, self.silo_id, self.fingerprint, size, run_id)
        stub.Register(wire.registration_to_proto(registration), timeout=CALL_TIMEOUT_SECONDS)
        while True:
            request = pb.WaitForTaskRequest(silo_id=self.silo_id, run_id=run_id, wait_seconds=WAIT_SECONDS)
            outcome = wire.task_outcome_from_proto(stub.WaitForTask(request, timeout=CALL_TIMEOUT_SECONDS))
            if isinstance(outcome, RunEnd):
                return
            if not isinstance(outcome, Task):
                continue
            download = pb.DownloadAdapterRequest(silo_id=self.silo_id, task_id=outcome.task_id)
            chunks = stub.DownloadAdapter(download, timeout=CALL_TIMEOUT_SECONDS)
            state = state_from_bytes(b"".join(chunk.data for chunk in chunks))
            seed = self.index * 1000 + outcome.round_index
            payload = update_to_bytes(synthetic_update(self.silo_id, float(size), state, outcome, seed))
            info = PayloadInfo(len(payload), hashlib.sha256(payload).digest())
            header = wire.upload_header_to_proto(UploadAnnouncement(self.silo_id, outcome.task_id, info, 0.0))
            parts = [payload[i : i + UPLOAD_CHUNK_BYTES] for i in range(0, len(payload), UPLOAD_CHUNK_BYTES)]
            messages = [header, *(pb.UploadUpdateRequest(chunk=part) for part in parts)]
            response = stub.UploadUpdate(iter(messages), timeout=CALL_TIMEOUT_SECONDS)
            with self.lock:
                self.report.accepted.setdefault(self.silo_id, []).append(response.round_index)


@dataclass(frozen=True)
class LoadAccounting:
    """How the coordinator of a load run accounts each silo's epsilon."""

    accountant: AccountantKind = DEFAULT_ACCOUNTANT
    max_epsilon: float | None = None
    """The per-silo budget every task is checked against before it is handed out (None: no budget)."""

    def privacy_table(self) -> dict[str, TomlValue]:
        """The coordinator config's [privacy] table."""
        table: dict[str, TomlValue] = {
            "noise_multiplier": 1.0,
            "test_mode": True,
            "accountant": self.accountant.value,
        }
        if self.max_epsilon is not None:
            table["max_epsilon"] = self.max_epsilon
        return table


NO_BUDGET = LoadAccounting()
"""The project's default accountant and no budget."""


def _coordinator_config(work: Path, model: Path, silos: int, rounds: int, accounting: LoadAccounting) -> Path:
    tables: dict[str, dict[str, TomlValue]] = {
        "": {"model_path": str(model), "labels": ["0", "1"]},
        "server": {
            "listen": "127.0.0.1:0",
            "port_file": str(work / "ports.json"),
            "max_workers": silos + EXTRA_WORKERS,
            "max_wait_seconds": WAIT_SECONDS,
        },
        "health": {"listen": "127.0.0.1:0"},
        "federation": {
            "policy": "aslora",
            "rounds": rounds,
            "seed": 0,
            "min_silos": silos,
            "round_deadline_seconds": START_TIMEOUT_SECONDS,
            "registration_timeout_seconds": START_TIMEOUT_SECONDS,
        },
        "lora": {"rank": 4, "alpha": 8},
        "privacy": accounting.privacy_table(),
        "training": {"local_steps": LOCAL_STEPS, "batch_size": 8, "lr": 0.5},
    }
    path = work / "coordinator.toml"
    path.write_text(toml_text(tables))
    return path


def _peak_rss_bytes(pid: int) -> int:
    """VmHWM (peak resident set) of a live process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * KIB
    raise RuntimeError(f"no VmHWM for process {pid}")


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a live process, from /proc/PID/stat (fields 14 and 15, in ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime = int(fields[STAT_UTIME]), int(fields[STAT_STIME])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


class RoundCpuMonitor(threading.Thread):
    """Samples the coordinator's CPU time whenever its log says a round opened."""

    def __init__(self, pid: int, log: Path) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.log = log
        self.samples: list[float] = []
        self.done = threading.Event()

    def run(self) -> None:
        """Poll the log until told to stop."""
        while not self.done.wait(POLL_SECONDS):
            opened = self.log.read_text(errors="replace").count(ROUND_OPEN_MARK)
            while len(self.samples) < opened:
                self.samples.append(_cpu_seconds(self.pid))

    def round_cpu_seconds(self, cpu_at_end: float) -> list[float]:
        """CPU time per round, from the samples taken at each opening and the run's end."""
        self.done.set()
        self.join()
        marks = [*self.samples, cpu_at_end]
        return [later - earlier for earlier, later in itertools.pairwise(marks)]


def run_load(
    model: Path,
    work: Path,
    silos: int,
    rounds: int,
    timeout: float,
    *,
    accounting: LoadAccounting = NO_BUDGET,
) -> LoadReport:
    """One load run; the coordinator is stopped (SIGTERM) once the silos are done, or at `timeout`."""
    # The config names absolute paths: a relative one would be relative to the config file's folder.
    work, model = work.absolute(), model.absolute()
    work.mkdir(parents=True, exist_ok=True)
    config = _coordinator_config(work, model, silos, rounds, accounting)
    log = work / "coordinator.log"
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    # INFO: the monitor reads the round openings from the log.
    command = [sys.executable, "-m", "aslora_cli", "--log-level", "INFO", "coordinator", "serve"]
    command += ["--config", str(config), "--insecure", "--state-dir", str(work / "coordinator")]
    started = time.monotonic()
    report = LoadReport(silos=silos, rounds=rounds, seconds=0.0)
    with log.open("wb") as stream:
        coordinator = subprocess.Popen(
            command, stdout=stream, stderr=subprocess.STDOUT, cwd=REPO, env=environment
        )
    try:
        port_file = work / "ports.json"
        while not port_file.exists():
            if coordinator.poll() is not None or time.monotonic() - started > START_TIMEOUT_SECONDS:
                raise RuntimeError(f"the coordinator did not start:\n{log.read_text()[-3000:]}")
            time.sleep(POLL_SECONDS)
        target = f"127.0.0.1:{json.loads(port_file.read_text())['grpc']}"
        listening, cpu_at_start = time.monotonic(), _cpu_seconds(coordinator.pid)
        monitor = RoundCpuMonitor(coordinator.pid, log)
        monitor.start()
        lock = threading.Lock()
        threads = [LoadSilo(i, target, base_model_fingerprint(model), report, lock) for i in range(silos)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(max(timeout - (time.monotonic() - started), 0.0))
        if any(thread.is_alive() for thread in threads):
            report.errors.append(f"silos still running after {timeout:g}s")
        report.peak_rss_bytes = _peak_rss_bytes(coordinator.pid)
        cpu_at_end = _cpu_seconds(coordinator.pid)
        report.coordinator_cpu_seconds = cpu_at_end - cpu_at_start
        report.round_cpu_seconds = monitor.round_cpu_seconds(cpu_at_end)
        report.serving_seconds = time.monotonic() - listening
        report.seconds = time.monotonic() - started
    finally:
        if coordinator.poll() is None:
            coordinator.send_signal(signal.SIGTERM)
        try:
            coordinator.wait(timeout=CALL_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            coordinator.kill()
            coordinator.wait()
    checkpoint = latest_run_checkpoint(FileFederationStore(work / "coordinator" / STATE_SUBFOLDER))
    if checkpoint is not None:
        report.rounds_completed = checkpoint.rounds_completed
        report.participations = {s.silo_id: s.rounds_participated for s in checkpoint.silos}
        report.ledger_steps = {
            s.silo_id: PrivacyAccountant.from_dict(s.ledger, accounting.accountant).steps_taken
            for s in checkpoint.silos
        }
    report.deadline_closes = log.read_text().count("closed at its deadline")
    return report


def main() -> None:
    """Run the load test once and print its report as JSON."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--silos", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--model", type=Path, default=None, help="local model folder (default: MiniLM)")
    parser.add_argument(
        "--work", type=Path, required=True, help="folder for configs, logs and the checkpoint"
    )
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument(
        "--accountant", type=AccountantKind, choices=list(AccountantKind), default=DEFAULT_ACCOUNTANT
    )
    parser.add_argument("--max-epsilon", type=float, default=None, help="per-silo budget (default: none)")
    parser.add_argument("--out", type=Path, default=None, help="also write the report to this JSON file")
    arguments = parser.parse_args()
    model = arguments.model or default_model_path()
    accounting = LoadAccounting(arguments.accountant, arguments.max_epsilon)
    report = run_load(
        model, arguments.work, arguments.silos, arguments.rounds, arguments.timeout, accounting=accounting
    )
    summary = {
        "silos": report.silos,
        "rounds": report.rounds,
        "accountant": accounting.accountant.value,
        "max_epsilon": accounting.max_epsilon,
        "seconds": round(report.seconds, 1),
        "every_update_accounted_for": report.every_update_accounted_for,
        "updates_accepted": sum(len(rounds) for rounds in report.accepted.values()),
        "rounds_completed": report.rounds_completed,
        "deadline_closes": report.deadline_closes,
        "coordinator_peak_rss_mib": round(report.peak_rss_bytes / KIB / KIB, 1),
        "coordinator_cpu_seconds_per_round": round(report.coordinator_cpu_seconds / report.rounds, 3),
        "coordinator_cpu_seconds_by_round": [round(seconds, 3) for seconds in report.round_cpu_seconds],
        "coordinator_steady_cpu_seconds_per_round": round(report.steady_cpu_seconds_per_round, 3),
        "coordinator_cpu_share_of_serving_time": round(
            report.coordinator_cpu_seconds / max(report.serving_seconds, 1e-9), 3
        ),
        "errors": report.errors[:10],
    }
    print(json.dumps(summary, indent=2))
    if arguments.out is not None:
        arguments.out.parent.mkdir(parents=True, exist_ok=True)
        arguments.out.write_text(json.dumps(summary, indent=2) + "\n")
    sys.exit(0 if report.every_update_accounted_for else 1)


if __name__ == "__main__":
    main()
