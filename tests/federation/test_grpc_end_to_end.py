"""A real federation: `aslora coordinator serve` and three `aslora silo run` processes, three rounds;
the operator reads the status and exports a PEFT adapter that reproduces the global model's logits."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from typer.testing import CliRunner

from aslora_cli.federation_files import toml_text
from aslora_cli.main import app
from aslora_core.adapters import attach_lora, load_base_classifier, write_adapter
from aslora_core.config import LoraSettings
from aslora_core.payload_files import state_from_file
from aslora_core.results import RESULTS_FORMAT
from aslora_rpc.settings_file import TomlValue
from tests.federation.processes import end, spawn, wait_for_port
from tests.grpc.helpers import coordinator_tables, silo_privacy_table, write_tsv
from tests.observability.scrape import scrape, value
from tests.training.helpers import encoded_texts

SILOS = 3
ROUNDS = 3
EVALUATION_INTERVAL = 2
"""The coordinator evaluates and records rounds 1 and 2 (every second round, and the last)."""
SHARD_SIZES = (40, 56, 72)
RUN_TIMEOUT_SECONDS = 180.0
EXIT_TIMEOUT_SECONDS = 30.0
LOGITS_ATOL = 1e-5
SEED = 1


@pytest.fixture(scope="module")
def federation(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A finished three-round run whose coordinator still serves; yields its address and the work folder."""
    work = tmp_path_factory.mktemp("federation")
    tables = coordinator_tables(
        tiny_model_dir, rounds=ROUNDS, seed=SEED, min_silos=SILOS, evaluation_interval=EVALUATION_INTERVAL
    )
    tables["server"] = {"listen": "127.0.0.1:0", "port_file": str(work / "ports.json"), "max_wait_seconds": 1}
    tables["privacy"] = {"target_epsilon": 6.0, "test_mode": True}
    tables["metrics"] = {"listen": "127.0.0.1:0"}
    tables["evaluation"] = {
        "data_path": str(write_tsv(work / "eval.tsv", 32, 5000)),
        "max_length": 16,
        "results_path": str(work / "results.json"),
    }
    (work / "coordinator.toml").write_text(toml_text(tables))
    coordinator_log = work / "coordinator.log"
    arguments = ["coordinator", "serve", "--config", str(work / "coordinator.toml"), "--insecure"]
    processes = [spawn([*arguments, "--state-dir", str(work / "coordinator")], coordinator_log)]
    try:
        port = wait_for_port(work / "ports.json", processes[0], coordinator_log, RUN_TIMEOUT_SECONDS)
        for index, size in enumerate(SHARD_SIZES):
            silo: dict[str, dict[str, TomlValue]] = {
                "": {"model_path": str(tiny_model_dir)},
                "silo": {"name": f"silo-{index:02d}"},
                "coordinator": {"address": f"127.0.0.1:{port}"},
                "data": {"train_path": str(write_tsv(work / f"silo-{index}.tsv", size, 1000 * index))},
                "training": {"physical_batch_size": 8, "max_length": 16},
                "privacy": silo_privacy_table(),
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
            # Silos leave by themselves once the run has finished.
            assert silo_process.wait(timeout=RUN_TIMEOUT_SECONDS) == 0, coordinator_log.read_text()
        yield f"127.0.0.1:{port}", work
        _invoke(["coordinator", "stop", "--address", f"127.0.0.1:{port}", "--insecure"])
        assert processes[0].wait(timeout=EXIT_TIMEOUT_SECONDS) == 0
    except subprocess.TimeoutExpired:
        pytest.fail("a process did not finish in time:\n" + coordinator_log.read_text()[-3000:])
    finally:
        end(processes)


def _invoke(arguments: list[str]) -> str:
    outcome = CliRunner().invoke(app, arguments)
    assert outcome.exit_code == 0, outcome.output
    return outcome.stdout


def test_status_reports_the_rounds_the_silos_and_their_epsilon(federation: tuple[str, Path]) -> None:
    address, _ = federation
    status = json.loads(
        _invoke(["coordinator", "status", "--address", address, "--insecure", "--format", "json"])
    )
    assert status["state"] == "finished"
    assert status["rounds_completed"] == ROUNDS == status["rounds_total"]
    assert [silo["silo_id"] for silo in status["silos"]] == [f"silo-{i:02d}" for i in range(SILOS)]
    assert [silo["dataset_size"] for silo in status["silos"]] == list(SHARD_SIZES)
    for silo in status["silos"]:
        assert silo["rounds_participated"] == ROUNDS
        assert 0 < silo["epsilon_reported"] <= 6.0
        assert silo["epsilon_recomputed"] == pytest.approx(silo["epsilon_reported"], rel=1e-9)
    ledger = json.loads(
        _invoke(["coordinator", "privacy", "--address", address, "--insecure", "--format", "json"])
    )
    assert [sum(e["steps"] for e in entry["events"]) for entry in ledger["entries"]] == [ROUNDS * 2] * SILOS


def test_the_exported_peft_adapter_gives_the_global_models_logits(
    federation: tuple[str, Path], tiny_model_dir: Path
) -> None:
    address, work = federation
    peft_dir, state_dir = work / "export-peft", work / "export-state"
    _invoke(["coordinator", "export", "--address", address, "--insecure", "--out", str(peft_dir)])
    _invoke(
        [
            "coordinator",
            "export",
            "--address",
            address,
            "--insecure",
            "--out",
            str(state_dir),
            "--adapter-state",
        ]
    )
    global_state = state_from_file(state_dir / "adapter-state.safetensors")
    batch = encoded_texts(tiny_model_dir, 8).batch(list(range(8)))
    batch.pop("labels")
    with torch.no_grad():
        coordinator_model = attach_lora(
            load_base_classifier(tiny_model_dir, 2), LoraSettings(rank=4, alpha=8), SEED
        )
        write_adapter(coordinator_model, global_state)
        expected = coordinator_model.eval()(**batch).logits
        exported = PeftModel.from_pretrained(load_base_classifier(tiny_model_dir, 2), str(peft_dir)).eval()
        actual = exported(**batch).logits
    torch.testing.assert_close(actual, expected, atol=LOGITS_ATOL, rtol=0)
    modules = json.loads((peft_dir / "adapter_config.json").read_text())["modules_to_save"]
    assert len(modules) == len(set(modules)) and "classifier" in modules


def test_every_export_carries_the_runs_model_card(federation: tuple[str, Path]) -> None:
    address, work = federation
    status = json.loads(_invoke(["coordinator", "status", "--address", address, "--insecure", "-o", "json"]))
    ledger = json.loads(_invoke(["coordinator", "privacy", "--address", address, "--insecure", "-o", "json"]))
    largest = max(entry["epsilon_recomputed"] for entry in ledger["entries"])
    for folder, extra in (("card-peft", []), ("card-state", ["--adapter-state"])):
        _invoke(
            ["coordinator", "export", "--address", address, "--insecure", "--out", str(work / folder), *extra]
        )
        card = (work / folder / "README.md").read_text()
        for fact in (
            f"| run id | {status['run_id']} |",
            "| policy | aslora |",
            "| task | sequence-classification |",
            f"| rounds | {ROUNDS} of {ROUNDS} |",
            f"| epsilon (largest over silos) | {largest:.4g} |",
            f"| delta | {ledger['delta']:g} |",
            "| base-model fingerprint (SHA-256) | `",
        ):
            assert fact in card, fact


def test_export_for_another_task_is_refused(federation: tuple[str, Path]) -> None:
    address, work = federation
    common = ["coordinator", "export", "--address", address, "--insecure"]
    refused = CliRunner().invoke(app, [*common, "--out", str(work / "as-lm"), "--task", "causal-lm"])
    assert refused.exit_code != 0
    assert "trains the sequence-classification task, not causal-lm" in refused.output
    assert not (work / "as-lm").exists()
    _invoke([*common, "--out", str(work / "as-classifier"), "--task", "sequence-classification"])
    assert (work / "as-classifier" / "adapter_config.json").exists()


def test_the_coordinator_writes_results_in_the_schema_of_simulate(federation: tuple[str, Path]) -> None:
    _, work = federation
    document = json.loads((work / "results.json").read_text())
    assert document["format"] == RESULTS_FORMAT
    assert [record["round"] for record in document["rounds"]] == [1, 2], "every second round, and the last"
    assert document["silo_examples"] == {f"silo-{i:02d}": size for i, size in enumerate(SHARD_SIZES)}
    assert document["epsilon"] == max(document["silo_epsilons"].values())
    assert all(record["upload_bytes"] > 0 for record in document["rounds"])


def test_the_coordinator_process_serves_its_metrics_on_the_port_it_wrote(
    federation: tuple[str, Path],
) -> None:
    _, work = federation
    port = json.loads((work / "ports.json").read_text())["metrics"]
    samples = scrape(f"127.0.0.1:{port}")
    assert value(samples, "aslora_rounds_completed_total") == ROUNDS
    assert value(samples, "aslora_updates_total", outcome="accepted") == ROUNDS * SILOS
    assert {silo for (name, labels) in samples if name == "aslora_privacy_epsilon" for _, silo in labels} == {
        f"silo-{i:02d}" for i in range(SILOS)
    }
