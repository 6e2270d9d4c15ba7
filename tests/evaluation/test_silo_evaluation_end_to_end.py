"""Evaluation at the silos in real federations (`aslora coordinator serve` and `aslora silo run` processes):
without noise in test mode the federated figures are those of one process over the union of the silos'
evaluation splits; with noise, each release is charged to the silo's ledger and shown in the coordinator's
privacy view; a silo that declines evaluation still trains, and the figures say how many silos they cover."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from aslora_cli.federation_files import toml_text
from aslora_cli.main import app
from aslora_core.config import DEFAULT_ACCOUNTANT, LoraSettings, TaskName
from aslora_core.data import LabelledTexts
from aslora_core.evaluation_release import clipped_sums
from aslora_core.mechanism import Mechanism
from aslora_core.payload_files import state_from_file
from aslora_core.privacy import PrivacyAccountant, epsilon_spent
from aslora_core.tasks import make_task
from aslora_rpc.settings_file import TomlValue
from aslora_silo.config import DEFAULT_MAX_DELTA, LocalData
from aslora_silo.ledger import LEDGER_FILE
from aslora_silo.workspace import load_evaluation_records
from tests.federation.processes import end, spawn, wait_for_port
from tests.grpc.helpers import coordinator_tables, silo_privacy_table, write_tsv
from tests.observability.scrape import scrape, value

ROUNDS = 2
SHARD_SIZE = 48
EVAL_FRACTION = 0.3
LOSS_BOUND = 2.0
MAX_LENGTH = 16
LABELS = ("0", "1")
SEED = 1
TRAINING_SIGMA = 1.0
RUN_TIMEOUT_SECONDS = 240.0
EXIT_TIMEOUT_SECONDS = 30.0
TASK = TaskName.SEQUENCE_CLASSIFICATION


@dataclass(frozen=True)
class FinishedRun:
    """What an operator and the silos' state folders hold once a run has finished."""

    work: Path
    status: dict[str, Any]
    ledger: dict[str, Any]
    results: dict[str, Any]
    metrics: dict[tuple[str, frozenset[tuple[str, str]]], float]


def _invoke(arguments: list[str]) -> str:
    outcome = CliRunner().invoke(app, arguments)
    assert outcome.exit_code == 0, outcome.output
    return outcome.stdout


def _silo_data(work: Path, index: int) -> LocalData:
    return LocalData(
        train_path=write_tsv(work / f"silo-{index}.tsv", SHARD_SIZE, 1000 * index),
        eval_fraction=EVAL_FRACTION,
    )


def _federate(
    model_dir: Path, work: Path, federation: dict[str, TomlValue], silo_privacy: list[dict[str, TomlValue]]
) -> FinishedRun:
    """Run a federation of one silo per `silo_privacy` table to its end; read its status, ledger, results
    and metrics, export its adapter state to `work`/export, and stop the coordinator."""
    tables = coordinator_tables(
        model_dir, rounds=ROUNDS, seed=SEED, min_silos=len(silo_privacy), **federation
    )
    tables["server"] = {"listen": "127.0.0.1:0", "port_file": str(work / "ports.json"), "max_wait_seconds": 1}
    tables["privacy"] = {"noise_multiplier": TRAINING_SIGMA, "test_mode": True}
    tables["metrics"] = {"listen": "127.0.0.1:0"}
    tables["evaluation"] = {"results_path": str(work / "results.json")}
    (work / "coordinator.toml").write_text(toml_text(tables))
    log = work / "coordinator.log"
    serve = ["coordinator", "serve", "--config", str(work / "coordinator.toml"), "--insecure"]
    processes = [spawn([*serve, "--state-dir", str(work / "coordinator")], log)]
    try:
        port = wait_for_port(work / "ports.json", processes[0], log, RUN_TIMEOUT_SECONDS)
        address = f"127.0.0.1:{port}"
        for index, privacy in enumerate(silo_privacy):
            data = _silo_data(work, index)
            silo: dict[str, dict[str, TomlValue]] = {
                "": {"model_path": str(model_dir)},
                "silo": {"name": f"silo-{index:02d}"},
                "coordinator": {"address": address},
                "data": {"train_path": str(data.train_path), "eval_fraction": EVAL_FRACTION},
                "training": {"physical_batch_size": 8, "max_length": MAX_LENGTH},
                "privacy": silo_privacy_table(**privacy),
                "health": {"listen": "127.0.0.1:0"},
                "connection": {"wait_seconds": 1, "give_up_after_seconds": 60},
            }
            (work / f"silo-{index}.toml").write_text(toml_text(silo))
            command = [
                "silo",
                "run",
                "--config",
                str(work / f"silo-{index}.toml"),
                "--insecure",
                "--max-runs",
                "1",
            ]
            processes.append(
                spawn([*command, "--state-dir", str(work / f"silo-{index}")], work / f"silo-{index}.log")
            )
        for silo_process in processes[1:]:
            assert silo_process.wait(timeout=RUN_TIMEOUT_SECONDS) == 0, log.read_text()[-3000:]
        common = ["--address", address, "--insecure"]
        run = FinishedRun(
            work=work,
            status=json.loads(_invoke(["coordinator", "status", *common, "--format", "json"])),
            ledger=json.loads(_invoke(["coordinator", "privacy", *common, "--format", "json"])),
            results=json.loads((work / "results.json").read_text()),
            metrics=scrape(f"127.0.0.1:{json.loads((work / 'ports.json').read_text())['metrics']}"),
        )
        _invoke(["coordinator", "export", *common, "--out", str(work / "export"), "--adapter-state"])
        _invoke(["coordinator", "stop", *common])
        assert processes[0].wait(timeout=EXIT_TIMEOUT_SECONDS) == 0
        return run
    except subprocess.TimeoutExpired:
        pytest.fail("a process did not finish in time:\n" + log.read_text()[-3000:])
    finally:
        end(processes)


@pytest.fixture(scope="module")
def noiseless(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FinishedRun]:
    """Three silos, the silos evaluating after the last round without noise (test mode); silo-02 declines."""
    yield _federate(
        tiny_model_dir,
        tmp_path_factory.mktemp("noiseless"),
        {
            "evaluation_interval": ROUNDS,
            "silo_evaluation": True,
            "evaluation_loss_bound": LOSS_BOUND,
            "evaluation_noise_multiplier": 0.0,
        },
        [
            {"min_evaluation_noise_multiplier": 0.0},
            {"min_evaluation_noise_multiplier": 0.0},
            {"release_evaluation": False},
        ],
    )


NOISE_ASKED = 2.0
SILO_FLOORS = (0.0, 3.0)
"""silo-00 releases at the plan's sigma, silo-01 raises it to its own floor."""


@pytest.fixture(scope="module")
def noisy(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FinishedRun]:
    """Two silos evaluating after every round with noise."""
    yield _federate(
        tiny_model_dir,
        tmp_path_factory.mktemp("noisy"),
        {
            "evaluation_interval": 1,
            "silo_evaluation": True,
            "evaluation_loss_bound": LOSS_BOUND,
            "evaluation_noise_multiplier": NOISE_ASKED,
        },
        [{"min_evaluation_noise_multiplier": floor} for floor in SILO_FLOORS],
    )


def test_without_noise_the_federated_figures_are_those_of_the_union(
    noiseless: FinishedRun, tiny_model_dir: Path, single_thread: None
) -> None:
    (record,) = noiseless.results["federated_evaluation"]
    assert record["round"] == ROUNDS - 1
    task = make_task(TASK)
    parts = [
        load_evaluation_records(TASK, _silo_data(noiseless.work, i), LABELS, noiseless.work / f"silo-{i}")
        for i in (0, 1)
    ]
    assert all(isinstance(part, LabelledTexts) and len(part) > 0 for part in parts)
    union = LabelledTexts(
        examples=tuple(e for part in parts if isinstance(part, LabelledTexts) for e in part.examples),
        label_names=LABELS,
    )
    model = task.build_model(tiny_model_dir, LABELS, LoraSettings(rank=4, alpha=8), SEED)
    final = state_from_file(noiseless.work / "export" / "adapter-state.safetensors")
    sums = clipped_sums(model, final, task.encode(union, tiny_model_dir, MAX_LENGTH), task, LOSS_BOUND)
    assert record["examples"] == sums.examples == len(union)
    assert record["accuracy"] == pytest.approx(sums.correct / sums.examples, abs=1e-12)
    assert record["loss"] == pytest.approx(sums.loss_sum / sums.examples, rel=1e-6)
    for index in (0, 1):
        assert "TEST MODE, evaluation of round 1" in (noiseless.work / f"silo-{index}.log").read_text()


def test_a_silo_that_declines_evaluation_still_trains_and_the_figures_say_whom_they_cover(
    noiseless: FinishedRun,
) -> None:
    (record,) = noiseless.results["federated_evaluation"]
    assert (record["silos_released"], record["silos_asked"], record["declined"]) == (2, 3, ["silo-02"])
    assert sorted(record["silos"]) == ["silo-00", "silo-01"]
    assert [silo["rounds_participated"] for silo in noiseless.status["silos"]] == [ROUNDS] * 3
    federated = noiseless.status["federated"]
    assert (federated["silos_released"], federated["silos_asked"]) == (2, 3)
    assert federated["accuracy"] == record["accuracy"]
    assert value(noiseless.metrics, "aslora_federated_accuracy") == record["accuracy"]
    assert value(noiseless.metrics, "aslora_federated_evaluation_silos", answer="declined") == 1
    ledger = PrivacyAccountant.load(noiseless.work / "silo-2" / LEDGER_FILE, DEFAULT_ACCOUNTANT)
    assert {event.mechanism for event in ledger.history} == {Mechanism.DP_SGD}


def test_each_release_is_charged_at_the_silo_and_seen_by_the_coordinator(noisy: FinishedRun) -> None:
    records = noisy.results["federated_evaluation"]
    assert [record["round"] for record in records] == list(range(ROUNDS))
    for index, floor in enumerate(SILO_FLOORS):
        silo_id = f"silo-{index:02d}"
        sigma = max(NOISE_ASKED, floor)
        assert [record["silos"][silo_id]["noise_multiplier"] for record in records] == [sigma] * ROUNDS
        own = PrivacyAccountant.load(noisy.work / f"silo-{index}" / LEDGER_FILE, DEFAULT_ACCOUNTANT)
        releases = [e for e in own.history if e.mechanism is Mechanism.EVALUATION]
        assert [(e.noise_multiplier, e.sample_rate, e.steps) for e in releases] == [(sigma, 1.0, 1)] * ROUNDS
        (entry,) = [e for e in noisy.ledger["entries"] if e["silo_id"] == silo_id]
        seen = [e for e in entry["events"] if e["mechanism"] == Mechanism.EVALUATION.value]
        assert [(e["noise_multiplier"], e["steps"]) for e in seen] == [(sigma, 1)] * ROUNDS
        total = own.epsilon(DEFAULT_MAX_DELTA)
        training = [e for e in own.history if e.mechanism is Mechanism.DP_SGD]
        assert total == epsilon_spent(own.history, DEFAULT_MAX_DELTA, DEFAULT_ACCOUNTANT)
        assert total > epsilon_spent(training, DEFAULT_MAX_DELTA, DEFAULT_ACCOUNTANT)
        assert entry["epsilon_reported"] == pytest.approx(total, rel=1e-12)
        assert entry["epsilon_recomputed"] == pytest.approx(total, rel=1e-9)
