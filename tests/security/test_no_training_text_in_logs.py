"""The logs of a whole networked run, at DEBUG level, hold no training text (DESIGN 5)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from aslora_cli.simulate_grpc import run_grpc_simulation
from aslora_core.config import DataSettings
from tests.federation.settings import tiny_simulation

RECORDS = 60
CANARY = "zqxcanary"
"""A token no log line would contain by chance; every training sentence carries it."""
WORDS = ("wonderful", "dreadful", "moving", "tedious")


def _write_training_file(path: Path) -> list[str]:
    sentences = [f"{CANARY}{i} the {WORDS[i % len(WORDS)]} film of record {i}" for i in range(RECORDS)]
    rows = ["label\tsentence", *(f"{i % 2}\t{s}" for i, s in enumerate(sentences))]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return sentences


def test_a_full_run_logs_none_of_the_training_sentences(
    tiny_model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sentences = _write_training_file(tmp_path / "train.tsv")
    settings = tiny_simulation(
        tiny_model_dir,
        DataSettings(train_path=str(tmp_path / "train.tsv"), eval_fraction=0.25),
        silos=2,
        rounds=2,
        local_steps=2,
        batch_size=8,
        physical_batch_size=4,
    )
    with caplog.at_level(logging.DEBUG):
        run = run_grpc_simulation(settings, tmp_path / "run", log_level="DEBUG", threads_per_process=1)
    assert len(run.result.rounds) == 2
    logs = {path.name: path.read_text(encoding="utf-8") for path in (tmp_path / "run").glob("*.log")}
    assert {"coordinator.log", "silo-00.log", "silo-01.log"} <= logs.keys()
    assert "DEBUG" in logs["coordinator.log"], "the children did not log at DEBUG level"
    assert all("INFO" in text for text in logs.values())
    logs["this process"] = caplog.text
    for name, text in logs.items():
        assert CANARY not in text, f"{name} contains training text"
        assert not any(sentence in text for sentence in sentences), name
