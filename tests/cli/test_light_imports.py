"""The program's entry point, its help and the operator's commands load none of the training libraries,
nor the dashboard's web server and chart libraries (a fresh interpreter runs them, then lists what it
imported)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

from aslora_cli.admin_connection import FAILED_EXIT_CODE

HEAVY_MODULES = ("torch", "transformers", "peft", "opacus", "starlette", "uvicorn", "plotly")
OPERATOR_COMMANDS = ("status", "silos", "privacy", "pause", "resume", "shutdown", "stop", "runs")
"""The operator's commands that need nothing but a connection (export, submit and cancel take more)."""
PROBE_TIMEOUT_SECONDS = 120
PROBE = """
import json
import sys

from typer.testing import CliRunner

from aslora_cli.main import app

heavy, runs = json.loads(sys.argv[1])
outcomes = [CliRunner().invoke(app, arguments) for arguments in runs]
print(json.dumps({
    "codes": [outcome.exit_code for outcome in outcomes],
    "outputs": [outcome.output for outcome in outcomes],
    "loaded": [name for name in heavy if name in sys.modules],
}))
"""
"""Runs each argument list through the app in one interpreter, then reports exit codes, output and the
heavy modules it imported."""


def _closed_loopback_address() -> str:
    """A loopback port that nothing listens on (bound, then released), so a call there fails at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


def _run_in_fresh_interpreter(runs: list[list[str]]) -> dict[str, list[object]]:
    completed = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps([HEAVY_MODULES, runs])],
        capture_output=True,
        text=True,
        timeout=PROBE_TIMEOUT_SECONDS,
        check=True,
    )
    report: dict[str, list[object]] = json.loads(completed.stdout)
    return report


def test_help_and_the_operator_commands_import_no_training_library(tmp_path: Path) -> None:
    connection = ["--address", _closed_loopback_address(), "--insecure"]
    helps = [["--help"], ["--version"], ["coordinator", "--help"], ["simulate", "--help"]]
    helps += [
        ["coordinator", command, "--help"]
        for command in (*OPERATOR_COMMANDS, "export", "submit", "cancel", "dashboard")
    ]
    calls = [["coordinator", command, *connection] for command in OPERATOR_COMMANDS]
    calls.append(["coordinator", "export", "--out", str(tmp_path / "export"), "--adapter-state", *connection])
    run_file = tmp_path / "run.toml"
    run_file.write_text('model_path = "/nowhere"\nlabels = ["0", "1"]\n[privacy]\nnoise_multiplier = 1.0\n')
    calls.append(["coordinator", "submit", str(run_file), *connection])
    calls.append(["coordinator", "cancel", "--run", "0123456789ab", *connection])
    calls.append(["coordinator", "dashboard", "--listen", "127.0.0.1:0", *connection])
    report = _run_in_fresh_interpreter(helps + calls)
    assert report["codes"] == [0] * len(helps) + [FAILED_EXIT_CODE] * len(calls), report["outputs"]
    # The operator's commands got as far as calling the coordinator, through the admin client.
    assert all("UNAVAILABLE" in str(output) for output in report["outputs"][len(helps) :])
    assert report["loaded"] == []
