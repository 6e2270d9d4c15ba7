"""One round in progress: its tasks, who has been handed one, and the updates that arrived in time."""

from __future__ import annotations

from dataclasses import dataclass, field

from aslora_coordinator.secure_round import SecureRound
from aslora_core.factor_choice import FactorChoice
from aslora_core.factors import SiloUpdate
from aslora_rpc.messages import Task
from aslora_rpc.transfer import SpooledPayload


@dataclass(frozen=True)
class ReceivedUpdate:
    """A validated update and what it cost on the wire."""

    update: SiloUpdate
    payload_bytes: int
    sha256: bytes = b""
    """Of the payload as received: an identical re-send of this update is acknowledged, not counted again."""


@dataclass
class OpenRound:
    """A round attempt between its opening and its close; updates after the close are late."""

    index: int
    attempt: int
    task_id: str
    selection: dict[str, FactorChoice]
    tasks: dict[str, Task]
    adapter: SpooledPayload
    deadline: float
    opened_at: float
    global_norm: float
    """Norm of the adapter this round trains from (the reference of the update norm bound)."""
    delivered: set[str] = field(default_factory=set)
    received: dict[str, ReceivedUpdate] = field(default_factory=dict)
    declined: set[str] = field(default_factory=set)
    closed: bool = False
    secure: SecureRound | None = None
    """The round's secure-aggregation steps, when the run uses it (its masked updates are kept there)."""

    @property
    def pending(self) -> set[str]:
        """Silos with a task that have neither sent their update nor declined (nor, in a secure round,
        missed its key or share step)."""
        waiting = set(self.tasks) - set(self.received) - self.declined
        if self.secure is not None:
            waiting -= set(self.secure.masked) | self.secure.gone()
        return waiting
