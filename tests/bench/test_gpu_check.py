"""`bench/gpu_check.sh` end to end in its CPU mode (tiny shapes, no carry): every part runs and the one
JSON report holds the fields docs/benchmarks.md section 3 reads, so the device script cannot rot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "gpu_check.sh"
RUN_TIMEOUT_SECONDS = 600.0
SIDES = ("dp_round", "plain_fixed", "plain_poisson")
SIDE_FIELDS = ("examples", "seconds", "samples_per_second", "tokens_per_second", "peak_mib")


def _assert_side(measured: dict[str, float]) -> None:
    assert set(SIDE_FIELDS) <= measured.keys()
    assert measured["examples"] > 0
    assert all(measured[name] > 0 for name in SIDE_FIELDS)


def _assert_compared(row: dict[str, object]) -> None:
    for name in SIDES:
        measured = row[name]
        assert isinstance(measured, dict)
        _assert_side(measured)
    for ratio in ("dp_over_plain_fixed", "dp_over_plain_poisson"):
        value = row[ratio]
        assert isinstance(value, float) and value > 0


def test_the_gpu_check_runs_its_cpu_mode_into_one_report(tmp_path: Path) -> None:
    report_path = tmp_path / "gpu_check.json"
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "DEVICE": "cpu",
        "SHAPES": "tiny",
        "REPORT": str(report_path),
    }
    outcome = subprocess.run(
        ["bash", str(SCRIPT)],
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_SECONDS,
        check=False,
    )
    assert outcome.returncode == 0, outcome.stderr[-4000:]
    report = json.loads(report_path.read_text())
    assert report["setup"]["shapes"] == "tiny"
    parts = report["parts"]
    assert list(parts) == ["a_minilm", "b_bert_base", "c_llama_1b", "d_llama_7b"]
    for name, part in parts.items():
        assert part["status"] == "ok", (name, part["status"])
        assert part["wall_seconds"] > 0
    minilm = parts["a_minilm"]["rows"]
    assert {row["precision"] for row in minilm} == {"float32", "bfloat16"}
    for row in [*minilm, *parts["b_bert_base"]["rows"], *parts["c_llama_1b"]["rows"]]:
        _assert_compared(row)
    assert parts["b_bert_base"]["best_dp_samples_per_second"] > 0
    engines = {
        (r["engine"], r["precision"], r["gradient_checkpointing"]) for r in parts["c_llama_1b"]["rows"]
    }
    assert engines == {("hooks", "bfloat16", False), ("hooks", "bfloat16", True), ("ghost", "float32", False)}
    for name in ("a_minilm", "b_bert_base", "c_llama_1b"):
        assert isinstance(parts[name]["target_met"], bool)
    seven = parts["d_llama_7b"]
    assert seven["parameter_dtypes"] == ["torch.bfloat16", "torch.float32"]
    _assert_side(seven["dp_round"])
