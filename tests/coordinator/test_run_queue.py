"""The run queue over both federation stores (in memory, in a folder): submission order, the run to
serve next, progress, ends, cancellation, and what a restarted coordinator reads back."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from aslora_coordinator.config import RunConfig
from aslora_coordinator.errors import FederationError
from aslora_coordinator.run_queue import RunQueue
from aslora_coordinator.state import (
    CheckpointError,
    FederationStore,
    FileFederationStore,
    InMemoryFederationStore,
)
from aslora_rpc.error_codes import ErrorCode
from aslora_rpc.messages import RunState
from tests.grpc.helpers import coordinator_tables, load_run_config

STORES: dict[str, Callable[[Path], FederationStore]] = {
    "memory": lambda folder: InMemoryFederationStore(),
    "files": lambda folder: FileFederationStore(folder / "state"),
}


@pytest.fixture(params=sorted(STORES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> FederationStore:
    """Each store, empty."""
    return STORES[request.param](tmp_path)


@pytest.fixture
def run(tmp_path: Path) -> RunConfig:
    """A small run's settings (the model folder is not read)."""
    return load_run_config(tmp_path / "run.toml", coordinator_tables(tmp_path / "model", policy="ffa"))


class TestRunQueue:
    """What every store must keep, read through the queue."""

    def test_runs_are_served_in_submission_order(self, store: FederationStore, run: RunConfig) -> None:
        queue = RunQueue(store)
        first, ahead_first = queue.submit("a.toml", {"k": 1}, run)
        second, ahead_second = queue.submit("b.toml", {"k": 2}, run)
        assert (ahead_first, ahead_second) == (0, 1)
        assert first.run_id != second.run_id and first.state is RunState.QUEUED
        assert (first.policy, first.rounds_total) == ("ffa", run.federation.rounds)
        assert queue.next_to_serve(0.0) == first
        queue.started(first.run_id)
        queue.ended(first.run_id, RunState.FINISHED, "all rounds done")
        served = queue.next_to_serve(0.0)
        assert served is not None and served.run_id == second.run_id

    def test_an_end_is_recorded_once_with_its_time_and_reason(
        self, store: FederationStore, run: RunConfig
    ) -> None:
        queue = RunQueue(store, clock=iter(range(100)).__next__)
        entry, _ = queue.submit("a.toml", {}, run)
        started = queue.started(entry.run_id)
        assert started.state is RunState.WAITING_FOR_SILOS and started.started_at is not None
        queue.progress(entry.run_id, RunState.RUNNING, 3, 1.5, 12.0)
        queue.progress(entry.run_id, RunState.FINISHED, 4, 2.0, 13.0)  # the end is not progress's to say
        assert queue.get(entry.run_id).state is RunState.RUNNING
        ended = queue.ended(entry.run_id, RunState.FINISHED, "all 4 rounds done")
        again = queue.ended(entry.run_id, RunState.FAILED, "later")
        assert ended == again and ended.reason == "all 4 rounds done" and ended.ended_at is not None
        assert (ended.rounds_completed, ended.epsilon_spent, ended.wall_seconds) == (4, 2.0, 13.0)
        assert queue.active_or_latest() == ended

    def test_a_cancelled_queued_run_never_starts(self, store: FederationStore, run: RunConfig) -> None:
        queue = RunQueue(store)
        entry, _ = queue.submit("a.toml", {}, run)
        cancelled = queue.cancel_queued(entry.run_id, "not needed")
        assert cancelled.state is RunState.CANCELLED and cancelled.started_at is None
        assert queue.next_to_serve(0.0) is None
        with pytest.raises(FederationError) as refusal:
            queue.get("no-such-run")
        assert refusal.value.code is ErrorCode.UNKNOWN_RUN

    def test_a_restarted_queue_reads_back_every_run(self, store: FederationStore, run: RunConfig) -> None:
        queue = RunQueue(store)
        entry, _ = queue.submit("a.toml", {"federation": {"rounds": 3}}, run)
        queue.started(entry.run_id)
        queue.progress(entry.run_id, RunState.RUNNING, 1, 0.5, 4.0)
        queue.submit("b.toml", {}, run)
        again = RunQueue(store)
        assert again.entries() == queue.entries()
        assert again.entries()[0].settings == {"federation": {"rounds": 3}}
        resumed = again.next_to_serve(0.0)
        assert resumed is not None and resumed.run_id == entry.run_id, "the interrupted run comes first"


def test_an_unreadable_queue_file_is_refused(tmp_path: Path) -> None:
    store = FileFederationStore(tmp_path)
    store.path.write_text('{"format_version": 99, "runs": []}')
    with pytest.raises(CheckpointError, match="queue-format version 99"):
        store.load_runs()
    store.path.write_text("not json")
    with pytest.raises(CheckpointError, match="not a readable run queue"):
        store.load_runs()
