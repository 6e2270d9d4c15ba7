"""Where the coordinator keeps its run state between rounds (checkpoints)."""

from aslora_coordinator.state.base import CheckpointError, CoordinatorSnapshot, SiloSnapshot, StateStore
from aslora_coordinator.state.files import FileStateStore
from aslora_coordinator.state.memory import InMemoryStateStore

__all__ = [
    "CheckpointError",
    "CoordinatorSnapshot",
    "FileStateStore",
    "InMemoryStateStore",
    "SiloSnapshot",
    "StateStore",
]
