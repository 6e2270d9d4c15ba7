"""Start `aslora` child processes for the end-to-end tests, bounded in time and always cleaned up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CHILD_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
POLL_SECONDS = 0.2


def spawn(
    arguments: list[str], log: Path, extra_env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """`python -m aslora_cli ARGUMENTS`, output appended to `log`, one torch thread; `extra_env` is added
    to the child's environment."""
    with log.open("ab") as stream:
        return subprocess.Popen(
            [sys.executable, "-m", "aslora_cli", "--log-level", "INFO", *arguments],
            stdout=stream,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**CHILD_ENV, **(extra_env or {})},
            cwd=REPO,
        )


def wait_for_port(port_file: Path, process: subprocess.Popen[bytes], log: Path, timeout: float) -> int:
    """The gRPC port the coordinator wrote, once it listens."""
    give_up = time.monotonic() + timeout
    while not port_file.exists():
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < give_up, f"no port file after {timeout}s:\n{log.read_text()}"
        time.sleep(POLL_SECONDS)
    port: int = json.loads(port_file.read_text())["grpc"]
    return port


def end(processes: list[subprocess.Popen[bytes]]) -> None:
    """Kill whatever still runs."""
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait()
