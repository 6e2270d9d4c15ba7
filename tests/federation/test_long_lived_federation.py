"""A long-lived federation over mutual TLS: runs submitted to a running coordinator are served one after
another by the same silo processes; a silo declines a run its lifetime budget cannot pay; runs are
cancelled while queued and while active; a coordinator killed between runs and in the middle of one
resumes its queue, and each run's adapter is bit-identical to the same run uninterrupted."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from aslora_core.config import DEFAULT_ACCOUNTANT
from aslora_core.factors import AdapterState
from aslora_core.payload_files import state_from_file
from aslora_core.privacy import PrivacyAccountant
from aslora_core.results import read_results
from tests.federation.long_lived import (
    DELTA,
    LOCAL_STEPS,
    ROUNDS,
    SILO_NAMES,
    LongLivedFederation,
    Tables,
    run_epsilon,
    run_tables,
)
from tests.grpc.helpers import write_tsv

LONG_RUN_ROUNDS = 300
"""The run cancelled while active: far too long to finish before the operator cancels it (after its first
round), and within silo-b's budget."""
BIG_BUDGET = 100.0


@dataclasses.dataclass
class Served:
    """What the operator and the silos' state folders show once a federation's runs are over."""

    federation: LongLivedFederation
    run_ids: dict[str, str]
    runs: dict[str, dict[str, Any]]
    silos: dict[str, list[dict[str, Any]]]
    ledgers: dict[str, dict[str, Any]]
    adapters: dict[str, AdapterState]


def _budgets() -> dict[str, float]:
    """silo-a's lifetime budget covers one run and a half; silo-b's every run."""
    return {"silo-a": (run_epsilon(1) + run_epsilon(2)) / 2, "silo-b": BIG_BUDGET}


def _run(
    model_dir: Path, work: Path, name: str, policy: str, *, rounds: int = ROUNDS, min_silos: int = 1
) -> Tables:
    tables = run_tables(model_dir, work / f"results-{name}.json", policy, rounds=rounds, min_silos=min_silos)
    tables["evaluation"] = {
        **tables["evaluation"],
        "data_path": str(write_tsv(work / "eval.tsv", 16, 5000)),
        "max_length": 16,
    }
    return tables


def _first_run(model_dir: Path, work: Path) -> Tables:
    """Run 1, in the coordinator's config: both silos take part (it waits for both)."""
    return _run(model_dir, work, "first", "aslora", min_silos=len(SILO_NAMES))


def _collect(federation: LongLivedFederation, run_ids: dict[str, str]) -> Served:
    runs = federation.runs()
    silos = {name: federation.admin("silos", "--run", run_id) for name, run_id in run_ids.items()}
    ledgers = {name: federation.admin("privacy", "--run", run_id) for name, run_id in run_ids.items()}
    adapters = {}
    for name in ("first", "second"):
        out = federation.work / f"export-{name}"
        federation.admin("export", "--run", run_ids[name], "--out", str(out), "--adapter-state")
        adapters[name] = state_from_file(out / "adapter-state.safetensors")
    return Served(federation, run_ids, runs, silos, ledgers, adapters)


@pytest.fixture(scope="module")
def served(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """Run 1 (aslora, from the config) and run 2 (ffa) finish; run 3 is cancelled while queued and run 4
    once its first round is done; both silo processes serve all of it and then leave."""
    work = tmp_path_factory.mktemp("long-lived")
    federation = LongLivedFederation(work, tiny_model_dir, _first_run(tiny_model_dir, work), _budgets())
    try:
        federation.start_coordinator()
        federation.start_silos({"silo-a": 3, "silo-b": 3})
        run_ids = {"first": next(iter(federation.runs()))}
        run_ids["second"] = federation.submit(_run(tiny_model_dir, work, "second", "ffa"), "second.toml")
        run_ids["queued"] = federation.submit(_run(tiny_model_dir, work, "queued", "rolora"), "queued.toml")
        long_run = _run(tiny_model_dir, work, "active", "aslora", rounds=LONG_RUN_ROUNDS)
        run_ids["active"] = federation.submit(long_run, "active.toml")
        assert federation.admin("cancel", "--run", run_ids["queued"])["state"] == "cancelled"
        federation.wait_for(
            lambda: federation.runs()[run_ids["active"]]["rounds_completed"] >= 1, "round of run 4"
        )
        assert federation.admin("cancel", "--run", run_ids["active"])["state"] == "cancelled"
        federation.wait_silos()
        yield _collect(federation, run_ids)
        assert federation.admin("shutdown")["action"] == "shutdown"
        assert federation.coordinator is not None
        assert federation.coordinator.wait(timeout=30) == 0, federation.tail()
    finally:
        federation.close()


def test_two_runs_with_different_policies_are_served_by_the_same_silo_processes(served: Served) -> None:
    first, second = (served.runs[served.run_ids[name]] for name in ("first", "second"))
    assert (first["state"], first["policy"]) == ("finished", "aslora")
    assert (second["state"], second["policy"]) == ("finished", "ffa")
    assert first["rounds_completed"] == second["rounds_completed"] == ROUNDS
    assert first["started_at"] <= first["ended_at"] <= second["started_at"] <= second["ended_at"], served.runs
    work = served.federation.work
    for name in ("first", "second"):
        result = read_results(work / f"results-{name}.json")
        assert [record.round for record in result.rounds] == list(range(ROUNDS))
        assert result.policy == served.runs[served.run_ids[name]]["policy"]
    # silo-b took part in both runs (and in the cancelled one): its lifetime ledger holds each run's events
    # under that run's id, each run's part is what the coordinator recomputes for it, and its epsilon is
    # its accountant's composition of all of them.
    ledger = served.federation.silo_ledger("silo-b")
    assert set(ledger.run_ids) == {served.run_ids[name] for name in ("first", "second", "active")}
    for name in ("first", "second"):
        line = _ledger_line(served, name, "silo-b")
        assert ledger.of_run(served.run_ids[name]).epsilon(DELTA) == pytest.approx(
            line["epsilon_recomputed"], rel=1e-9
        )
    # What silo-b reported with its last update of run 2 is its own accountant's composition of the
    # events of both runs in its ledger.
    both = (served.run_ids["first"], served.run_ids["second"])
    composed = PrivacyAccountant(DEFAULT_ACCOUNTANT, (e for e in ledger.history if e.run_id in both))
    reported = _ledger_line(served, "second", "silo-b")["epsilon_reported"]
    assert reported == pytest.approx(composed.epsilon(DELTA), rel=1e-9)
    assert composed.epsilon(DELTA) > ledger.of_run(served.run_ids["second"]).epsilon(DELTA)


def test_a_silo_whose_lifetime_budget_covers_one_run_and_a_half_declines_the_second(served: Served) -> None:
    [declined] = [silo for silo in served.silos["second"] if silo["silo_id"] == "silo-a"]
    assert declined["dataset_size"] == 0 and declined["rounds_participated"] == 0, "never counted"
    assert "declined the run" in declined["declined_reason"]
    assert (
        "budget" in declined["declined_reason"] and f"{_budgets()['silo-a']:g}" in declined["declined_reason"]
    )
    [took_part] = [silo for silo in served.silos["second"] if silo["silo_id"] == "silo-b"]
    assert took_part["rounds_participated"] == ROUNDS, "min_silos = 1: the run went on with silo-b"
    ledger = served.federation.silo_ledger("silo-a")
    assert ledger.run_ids == (served.run_ids["first"],), "silo-a spent nothing after run 1"
    assert ledger.epsilon(DELTA) == pytest.approx(run_epsilon(1), rel=1e-9)
    assert ledger.epsilon(DELTA) <= _budgets()["silo-a"]


def test_a_run_cancelled_while_queued_never_starts(served: Served) -> None:
    queued = served.runs[served.run_ids["queued"]]
    assert queued["state"] == "cancelled" and queued["started_at"] is None
    assert queued["rounds_completed"] == 0 and served.silos["queued"] == []
    assert not (served.federation.work / "results-queued.json").exists()
    for name in SILO_NAMES:
        assert served.run_ids["queued"] not in served.federation.silo_ledger(name).run_ids


def test_a_run_cancelled_while_active_ends_cleanly_with_its_partial_results(served: Served) -> None:
    active = served.runs[served.run_ids["active"]]
    assert active["state"] == "cancelled" and "cancelled by the operator" in active["reason"]
    assert 1 <= active["rounds_completed"] < LONG_RUN_ROUNDS
    result = read_results(served.federation.work / "results-active.json")
    assert len(result.rounds) == active["rounds_completed"]
    # silo-b's ledger and the coordinator's agree on every round the cancelled run aggregated; the round
    # open at the cancel was charged by the coordinator when it handed the task out, and by the silo only
    # if it trained it before it heard of the cancel: the coordinator never counts less than the silo.
    line = _ledger_line(served, "active", "silo-b")
    own = served.federation.silo_ledger("silo-b").of_run(served.run_ids["active"])
    charged = sum(e["steps"] for e in line["events"])
    assert charged - own.steps_taken in (0, LOCAL_STEPS)
    assert own.steps_taken >= active["rounds_completed"] * LOCAL_STEPS
    assert own.epsilon(DELTA) <= line["epsilon_recomputed"] * (1 + 1e-9)
    assert served.run_ids["active"] not in served.federation.silo_ledger("silo-a").run_ids, "it declined"


def test_a_coordinator_killed_between_runs_and_during_one_resumes_its_queue_exactly(
    served: Served, tiny_model_dir: Path, tmp_path: Path
) -> None:
    federation = LongLivedFederation(
        tmp_path, tiny_model_dir, _first_run(tiny_model_dir, tmp_path), _budgets()
    )
    try:
        federation.start_coordinator()
        # silo-a leaves after run 1: whether it declines run 2 (as in the uninterrupted federation) or is
        # gone, run 2 is silo-b's alone.
        federation.start_silos({"silo-a": 1, "silo-b": 2})
        run_ids = {"first": next(iter(federation.runs()))}
        federation.wait_for(lambda: federation.runs()[run_ids["first"]]["state"] == "finished", "run 1")
        federation.kill_coordinator()  # between runs
        federation.start_coordinator(crash_after_aggregating=0)
        run_ids["second"] = federation.submit(_run(tiny_model_dir, tmp_path, "second", "ffa"), "second.toml")
        federation.wait_coordinator_crash()  # in the middle of run 2, after its first round's aggregation
        federation.start_coordinator()
        federation.wait_silos()
        resumed = _collect(federation, run_ids)
    finally:
        federation.close()
    assert [run["state"] for run in resumed.runs.values()] == ["finished", "finished"]
    for name in ("first", "second"):
        _assert_identical(resumed.adapters[name], served.adapters[name])
    # The run's wall time is carried across the restart (at least the time before the kill is in it).
    assert resumed.runs[run_ids["second"]]["wall_seconds"] > 0


def _ledger_line(served: Served, run: str, silo: str) -> dict[str, Any]:
    lines: list[dict[str, Any]] = [e for e in served.ledgers[run]["entries"] if e["silo_id"] == silo]
    assert len(lines) == 1, lines
    return lines[0]


def _assert_identical(got: AdapterState, want: AdapterState) -> None:
    assert got.layer_names == want.layer_names and sorted(got.head) == sorted(want.head)
    for name in want.layer_names:
        assert torch.equal(got.layers[name].a, want.layers[name].a), name
        assert torch.equal(got.layers[name].b, want.layers[name].b), name
    for key, tensor in want.head.items():
        assert torch.equal(got.head[key], tensor), key
