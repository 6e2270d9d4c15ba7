"""Where the coordinator keeps its run queue and each run's state between rounds (checkpoints)."""

from aslora_coordinator.state.base import CheckpointError, CoordinatorSnapshot, SiloSnapshot, StateStore
from aslora_coordinator.state.federation import (
    FederationStore,
    FileFederationStore,
    InMemoryFederationStore,
    latest_run_checkpoint,
)
from aslora_coordinator.state.files import FileStateStore
from aslora_coordinator.state.memory import InMemoryStateStore

__all__ = [
    "CheckpointError",
    "CoordinatorSnapshot",
    "FederationStore",
    "FileFederationStore",
    "FileStateStore",
    "InMemoryFederationStore",
    "InMemoryStateStore",
    "SiloSnapshot",
    "StateStore",
    "latest_run_checkpoint",
]
