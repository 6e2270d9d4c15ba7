"""A consistent, immutable read of one run's state, taken by the orchestrator under its lock."""

from __future__ import annotations

from dataclasses import dataclass

from aslora_coordinator.ledger import LedgerEntry
from aslora_coordinator.registry import SiloRecord
from aslora_core.federated_evaluation import FederatedEvaluation
from aslora_rpc.messages import RunState


@dataclass(frozen=True)
class SiloObservation:
    """One registered silo (a copy of its record) and what the orchestrator knows of it now."""

    record: SiloRecord
    connected: bool
    seconds_since_seen: float
    epsilon_recomputed: float


@dataclass(frozen=True)
class RunObservation:
    """The run as it stands: its state, round progress, latest evaluation, silos and ledger."""

    state: RunState
    reason: str
    rounds_completed: int
    open_round: int | None
    """The index of the round in progress, if any."""
    latest_evaluation: tuple[float, float] | None
    """(accuracy, loss) of the latest evaluated global adapter."""
    federated_evaluation: FederatedEvaluation | None
    """The silos' pooled evaluation of the latest adapter they evaluated, and their own noised figures."""
    silos: tuple[SiloObservation, ...]
    ledger: tuple[LedgerEntry, ...]
    waiting_for: str = ""
    """What holds the run up, in the operator's words (coordinator/waiting.py); empty when nothing."""
