"""The state a coordinator needs to resume a run, and the interface of the stores that keep it.

A snapshot is taken when a run starts and after every aggregated round. The file-backed store
(`files.py`) writes it atomically (write, fsync, rename, fsync the folder) and a restarted coordinator
resumes from `load()` (`resume.py`); the in-memory store keeps it for the life of the process.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from aslora_coordinator.registry import SiloRecord
from aslora_core.factors import AdapterState
from aslora_rpc.messages import RunState


@dataclass(frozen=True)
class SiloSnapshot:
    """A registered silo as checkpointed (liveness is not: silos reconnect after a restart)."""

    silo_id: str
    dataset_size: int
    sample_rate: float
    noise_multiplier: float
    rounds_participated: int
    epsilon_reported: float
    declined_reason: str | None
    ledger: dict[str, Any]
    """The coordinator's recomputation: `PrivacyAccountant.to_dict()` of the tasks handed to the silo."""
    evicted: bool = False
    """An operator evicted the silo from the run (it may not register again)."""

    def record(self) -> SiloRecord:
        """The silo's registry record, as not heard from since the checkpoint."""
        return SiloRecord(
            silo_id=self.silo_id,
            dataset_size=self.dataset_size,
            sample_rate=self.sample_rate,
            noise_multiplier=self.noise_multiplier,
            last_seen=0.0,
            rounds_participated=self.rounds_participated,
            epsilon_reported=self.epsilon_reported,
            declined_reason=self.declined_reason,
            evicted=self.evicted,
        )


@dataclass(frozen=True)
class CoordinatorSnapshot:
    """Everything needed to continue a run where it stood after `rounds_completed` rounds."""

    run_id: str
    config_fingerprint: str
    """SHA-256 of the run configuration (`resume.config_fingerprint`): resumed only by the same run."""
    state: RunState
    reason: str
    rounds_completed: int
    global_state: AdapterState
    policy_state: dict[str, object]
    silos: tuple[SiloSnapshot, ...]
    results: dict[str, Any]
    """The results JSON so far (`RunResult.to_json()`)."""
    failed_attempts: int = 0
    """Attempts of round `rounds_completed` that closed short of min_silos (their tasks are in the ledger);
    a resumed run goes on with the next attempt."""


class CheckpointError(RuntimeError):
    """A checkpoint that must not be resumed: unreadable, of an unknown format version, or of another run
    configuration. The message says which; `aslora coordinator serve` turns it into a clean exit."""


class StateStore(ABC):
    """Keeps the latest snapshot; `save` replaces it as one atomic step."""

    @abstractmethod
    def save(self, snapshot: CoordinatorSnapshot) -> None:
        """Replace the stored snapshot with `snapshot`."""

    @abstractmethod
    def load(self) -> CoordinatorSnapshot | None:
        """The latest snapshot, or None before the first save; CheckpointError when it cannot be used."""
