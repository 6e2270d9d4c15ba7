"""Where a long-lived coordinator keeps its run queue and each run's checkpoints: the interface, in memory,
and in a folder (`runs.json` beside one checkpoint folder per run)."""

from __future__ import annotations

import json
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

from aslora_coordinator.run_entry import RunEntry
from aslora_coordinator.state.base import CheckpointError, CoordinatorSnapshot, StateStore
from aslora_coordinator.state.files import FileStateStore
from aslora_coordinator.state.memory import InMemoryStateStore
from aslora_core.atomic_files import write_atomically

QUEUE_FILE = "runs.json"
RUNS_FOLDER = "runs"
QUEUE_FORMAT_VERSION = 1
"""Bumped whenever the queue file's JSON changes in a way an older reader would misread."""


class FederationStore(ABC):
    """The run queue (every submitted run, in submission order) and a checkpoint store per run."""

    @abstractmethod
    def save_runs(self, runs: Sequence[RunEntry]) -> None:
        """Replace the stored queue with `runs`, as one atomic step."""

    @abstractmethod
    def load_runs(self) -> list[RunEntry]:
        """The stored queue (empty before the first save); CheckpointError when it cannot be read."""

    @abstractmethod
    def checkpoints(self, run_id: str) -> StateStore:
        """The checkpoint store of one run."""


class InMemoryFederationStore(FederationStore):
    """Lives as long as the process: a coordinator started without a state folder resumes nothing."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: list[RunEntry] = []
        self._checkpoints: dict[str, InMemoryStateStore] = {}

    def save_runs(self, runs: Sequence[RunEntry]) -> None:
        """Keep the queue."""
        with self._lock:
            self._runs = list(runs)

    def load_runs(self) -> list[RunEntry]:
        """The queue kept."""
        with self._lock:
            return list(self._runs)

    def checkpoints(self, run_id: str) -> StateStore:
        """The run's in-memory checkpoint store (one per run id, kept with the process)."""
        with self._lock:
            return self._checkpoints.setdefault(run_id, InMemoryStateStore())


class FileFederationStore(FederationStore):
    """`folder/runs.json` (written atomically) and `folder/runs/<run id>/` with each run's checkpoint."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / QUEUE_FILE

    def save_runs(self, runs: Sequence[RunEntry]) -> None:
        """Write the queue (temporary file, fsync, rename, fsync the folder)."""
        document = {"format_version": QUEUE_FORMAT_VERSION, "runs": [run.to_json() for run in runs]}
        write_atomically(self.path, (json.dumps(document, indent=1, sort_keys=True) + "\n").encode("utf-8"))

    def load_runs(self) -> list[RunEntry]:
        """The queue in the folder (none yet: empty); CheckpointError when it cannot be used."""
        if not self.path.exists():
            return []
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
            version = document.get("format_version")
            if version != QUEUE_FORMAT_VERSION:
                raise CheckpointError(
                    f"{self.path} has queue-format version {version!r}; this coordinator reads version "
                    f"{QUEUE_FORMAT_VERSION} only"
                )
            return [RunEntry.from_json(item) for item in document["runs"]]
        except (OSError, AttributeError, KeyError, TypeError, ValueError) as error:
            raise CheckpointError(f"{self.path} is not a readable run queue: {error}") from error

    def checkpoints(self, run_id: str) -> StateStore:
        """`folder/runs/<run id>/checkpoint.safetensors`."""
        return FileStateStore(self.folder / RUNS_FOLDER / run_id)


def latest_run_checkpoint(store: FederationStore) -> CoordinatorSnapshot | None:
    """The checkpoint of the latest run that started (None before any has)."""
    started = [run for run in store.load_runs() if run.started_at is not None]
    return store.checkpoints(started[-1].run_id).load() if started else None
