"""Where the coordinator keeps its run state between rounds (checkpoints)."""

from aslora_coordinator.state.base import CoordinatorSnapshot, SiloSnapshot, StateStore
from aslora_coordinator.state.memory import InMemoryStateStore

__all__ = ["CoordinatorSnapshot", "InMemoryStateStore", "SiloSnapshot", "StateStore"]
