"""A state store that lives as long as the process (no restart recovery)."""

from __future__ import annotations

import threading
from dataclasses import replace

from aslora_coordinator.state.base import CoordinatorSnapshot, StateStore


class InMemoryStateStore(StateStore):
    """Holds the latest snapshot in memory; its adapter tensors are copied so later rounds cannot alter it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._snapshot: CoordinatorSnapshot | None = None

    def save(self, snapshot: CoordinatorSnapshot) -> None:
        """Keep a copy of `snapshot`."""
        copy = replace(snapshot, global_state=snapshot.global_state.clone())
        with self._lock:
            self._snapshot = copy

    def load(self) -> CoordinatorSnapshot | None:
        """The latest snapshot kept."""
        with self._lock:
            return self._snapshot
