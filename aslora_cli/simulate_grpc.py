"""`aslora simulate --transport grpc`: the coordinator and K silos as separate processes on loopback.

The data are loaded and partitioned here exactly as the in-process simulation does (same silo ids, same
shards, same seeds); each silo gets its shard as a JSONL file, the coordinator the evaluation set. Every
connection uses mutual TLS with certificates made for the run (a throwaway CA under the work folder).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO

from aslora_cli.federation_files import coordinator_toml, silo_toml, write_records
from aslora_coordinator.admin_client import AdminClient
from aslora_coordinator.export_format import ADAPTER_STATE_FILE, ExportFormat
from aslora_core.adapters import default_model_path
from aslora_core.config import SimulationSettings
from aslora_core.factors import AdapterState
from aslora_core.payload_files import state_from_file
from aslora_core.results import RoundRecord, RunResult, read_results
from aslora_core.simulation import load_records, partition_records, silo_ids
from aslora_core.tasks import make_task
from aslora_rpc.certificates import certificate_fingerprint, load_certificate
from aslora_rpc.channels import open_channel
from aslora_rpc.endpoints import Endpoint
from aslora_rpc.local_pki import create_local_pki, tls_files, tls_table
from aslora_rpc.tls import TlsFiles

POLL_SECONDS = 0.5
STARTUP_TIMEOUT_SECONDS = 300.0
EXIT_TIMEOUT_SECONDS = 60.0
LOG_TAIL_CHARS = 3000
RoundCallback = Callable[[RoundRecord], None]


class SimulationProcessError(RuntimeError):
    """A process of the simulation failed or did not finish in time; the message holds its log's tail."""


@dataclass(frozen=True)
class GrpcRun:
    """What a networked simulation produced: the results and the final global adapter."""

    result: RunResult
    final_state: AdapterState


@dataclass
class _Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    log: IO[bytes]


def run_grpc_simulation(
    settings: SimulationSettings,
    work_dir: Path,
    *,
    log_level: str = "WARNING",
    threads_per_process: int | None = None,
    on_round: RoundCallback | None = None,
) -> GrpcRun:
    """Run the federation over gRPC in child processes under `work_dir`; every child is ended on return."""
    started = time.perf_counter()
    # The config files written below name absolute paths: a relative one would resolve against the file's
    # folder (aslora_rpc/config_file.py), not against this process's working directory.
    work_dir = work_dir.absolute()
    work_dir.mkdir(parents=True, exist_ok=True)
    seed = settings.federation.seed
    train, evaluation = load_records(make_task(settings.task), settings.data, seed)
    parts = partition_records(train.labels, settings.partition, seed)
    model_path = (
        str(Path(settings.model_path).absolute()) if settings.model_path else str(default_model_path())
    )
    eval_path, fields = write_records(evaluation, work_dir, "eval")
    results_path, port_file = work_dir / "results.json", work_dir / "ports.json"
    names = silo_ids(settings.partition.silos)
    pki = create_local_pki(work_dir / "pki", names)
    # Each silo pins every silo's certificate (in a real federation, obtained from each peer out of band).
    peers = (
        {name: certificate_fingerprint(load_certificate(pki.silos[name].cert.read_bytes())) for name in names}
        if settings.federation.secure_aggregation
        else {}
    )
    children: list[_Child] = []
    env = _child_environment(threads_per_process)
    try:
        config = work_dir / "coordinator.toml"
        config.write_text(
            coordinator_toml(
                settings,
                model_path,
                train.label_names,
                eval_path,
                results_path,
                port_file,
                fields,
                tls_table(pki.coordinator),
            )
        )
        children.append(
            _spawn(
                "coordinator",
                [
                    "coordinator",
                    "serve",
                    "--config",
                    str(config),
                    "--state-dir",
                    str(work_dir / "coordinator-state"),
                ],
                work_dir,
                log_level,
                env,
            )
        )
        port = _wait_for_port(port_file, children)
        for silo_id, indices in zip(names, parts, strict=True):
            shard, _ = write_records(train.subset(indices), work_dir, silo_id)
            silo_config = work_dir / f"{silo_id}.toml"
            silo_tls = tls_table(pki.silos[silo_id])
            silo_config.write_text(
                silo_toml(settings, model_path, silo_id, shard, len(indices), port, fields, silo_tls, peers)
            )
            children.append(
                _spawn(
                    silo_id,
                    [
                        "silo",
                        "run",
                        "--config",
                        str(silo_config),
                        "--max-runs",
                        "1",
                        "--state-dir",
                        str(work_dir / f"{silo_id}-state"),
                    ],
                    work_dir,
                    log_level,
                    env,
                )
            )
        operator = tls_files(pki.operator)
        final_state = _follow(port, operator, results_path, children, work_dir, on_round)
        for child in children:
            _wait_exit(child)
    finally:
        for child in children:
            if child.process.poll() is None:
                child.process.kill()
                child.process.wait()
            child.log.close()
    result = read_results(results_path)
    result.settings = asdict(settings)
    result.wall_seconds = time.perf_counter() - started
    return GrpcRun(result=result, final_state=final_state)


def _child_environment(threads_per_process: int | None) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")
    if threads_per_process is not None:
        env["OMP_NUM_THREADS"] = str(threads_per_process)
    return env


def _spawn(name: str, arguments: list[str], work_dir: Path, log_level: str, env: dict[str, str]) -> _Child:
    state_dir = work_dir / f"{name}-state"
    log_path = work_dir / f"{name}.log"
    log = log_path.open("wb")
    command = [sys.executable, "-m", "aslora_cli", "--log-level", log_level, *arguments]
    command += ["--state-dir", str(state_dir)]
    process = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
    )
    return _Child(name, process, log_path, log)


def _check_alive(children: list[_Child]) -> None:
    for child in children:
        code = child.process.poll()
        if code is not None and code != 0:
            raise SimulationProcessError(f"{child.name} exited with status {code}:\n{_tail(child.log_path)}")


def _tail(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")[-LOG_TAIL_CHARS:]


def _wait_for_port(port_file: Path, children: list[_Child]) -> int:
    give_up = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while not port_file.exists():
        _check_alive(children)
        if children[0].process.poll() is not None or time.monotonic() > give_up:
            raise SimulationProcessError(f"the coordinator did not start:\n{_tail(children[0].log_path)}")
        time.sleep(POLL_SECONDS)
    port: int = json.loads(port_file.read_text())["grpc"]
    return port


def _follow(
    port: int,
    operator: TlsFiles,
    results_path: Path,
    children: list[_Child],
    work_dir: Path,
    on_round: RoundCallback | None,
) -> AdapterState:
    """Show rounds as the results file grows; at the end, fetch the adapter and stop the coordinator (as
    the run's operator)."""
    channel = open_channel(Endpoint("127.0.0.1", port), operator, insecure=False)
    admin = AdminClient(channel)
    shown = 0
    try:
        while True:
            _check_alive(children)
            status = admin.status()
            records = _read_rounds(results_path)
            for record in records[shown:]:
                if on_round is not None:
                    on_round(record)
            shown = len(records)
            if status.state.ended:
                break
            time.sleep(POLL_SECONDS)
        if status.rounds_completed != status.rounds_total:
            raise SimulationProcessError(f"the run ended early: {status.state.value} ({status.reason})")
        files = admin.export(ExportFormat.ADAPTER_STATE, work_dir / "final-adapter")
        final_state = state_from_file(next(f for f in files if f.name == ADAPTER_STATE_FILE))
        admin.shutdown("the simulation is over")
        return final_state
    finally:
        channel.close()


def _read_rounds(results_path: Path) -> list[RoundRecord]:
    return read_results(results_path).rounds if results_path.exists() else []


def _wait_exit(child: _Child) -> None:
    try:
        code = child.process.wait(timeout=EXIT_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired as error:
        raise SimulationProcessError(f"{child.name} did not exit:\n{_tail(child.log_path)}") from error
    if code != 0:
        raise SimulationProcessError(f"{child.name} exited with status {code}:\n{_tail(child.log_path)}")
