"""The silo registry: who registered with which dataset size and plan, and when each was last heard from."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aslora_coordinator.errors import FederationError
from aslora_rpc.error_codes import ErrorCode

Clock = Callable[[], float]
RUN_DECLINED = "declined the run"
"""How a silo's reason starts when it declined the run's plan (a task's decline is its own words)."""


@dataclass
class SiloRecord:
    """One registered silo: its weight (dataset size), its published privacy plan, and its liveness."""

    silo_id: str
    dataset_size: int
    sample_rate: float
    noise_multiplier: float
    last_seen: float
    rounds_participated: int = 0
    epsilon_reported: float = 0.0
    declined_reason: str | None = None
    """Set when the silo refused a task, or the run itself, or was evicted (no task until it registers
    again; an evicted silo never does in this run)."""
    evicted: bool = False
    """An operator evicted the silo from the run: it gets no further task and may not register again."""

    @property
    def declined_run(self) -> bool:
        """Whether the silo declined the run's plan without registering (it has no records in the run)."""
        return self.dataset_size == 0


class SiloRegistry:
    """Registered silos by id; not thread-safe on its own (every caller holds the run's lock)."""

    def __init__(self, clock: Clock, heartbeat_timeout_seconds: float) -> None:
        self._clock = clock
        self._timeout = heartbeat_timeout_seconds
        self._silos: dict[str, SiloRecord] = {}

    def register(
        self, silo_id: str, dataset_size: int, sample_rate: float, noise_multiplier: float
    ) -> SiloRecord:
        """Add a silo, or welcome back one that restarted, was fixed or declined earlier: it takes the plan
        of its current dataset size (the ledger keeps what its earlier tasks were charged), and a decline is
        cleared. An evicted silo is refused."""
        known = self._silos.get(silo_id)
        now = self._clock()
        if known is not None and known.evicted:
            raise FederationError(ErrorCode.SILO_EVICTED, known.declined_reason or "evicted by the operator")
        if known is not None and known.declined_run:
            # It declined the run's plan earlier and now accepts it (a restarted or reconfigured silo).
            known = None
        if known is not None:
            known.dataset_size, known.sample_rate = dataset_size, sample_rate
            known.noise_multiplier, known.last_seen = noise_multiplier, now
            known.declined_reason = None
            return known
        record = SiloRecord(silo_id, dataset_size, sample_rate, noise_multiplier, last_seen=now)
        self._silos[silo_id] = record
        return record

    def record_run_decline(self, silo_id: str, reason: str) -> SiloRecord:
        """Note a silo that declined the run's plan: not registered, never available, shown with its reason.
        A silo already registered in the run keeps its record, now declined."""
        record = self._silos.get(silo_id)
        if record is None:
            record = SiloRecord(silo_id, 0, 0.0, 0.0, last_seen=self._clock())
            self._silos[silo_id] = record
        record.declined_reason = reason
        return record

    def evict(self, silo_id: str, reason: str) -> SiloRecord:
        """Take a silo out of the run for good: no further task, no new registration."""
        record = self.get(silo_id)
        record.evicted, record.declined_reason = True, reason
        return record

    def restore(self, record: SiloRecord) -> None:
        """Put back a silo from a checkpoint, as not heard from since (it is available once it calls)."""
        record.last_seen = self._clock() - self._timeout - 1.0
        self._silos[record.silo_id] = record

    def get(self, silo_id: str) -> SiloRecord:
        """The record of a registered silo."""
        record = self._silos.get(silo_id)
        if record is None:
            raise FederationError(ErrorCode.UNKNOWN_SILO, silo_id)
        return record

    def touch(self, silo_id: str) -> SiloRecord:
        """Mark the silo as heard from now."""
        record = self.get(silo_id)
        record.last_seen = self._clock()
        return record

    def is_connected(self, record: SiloRecord) -> bool:
        """Heard from within the heartbeat timeout."""
        return self._clock() - record.last_seen <= self._timeout

    def seconds_since_seen(self, record: SiloRecord) -> float:
        """Seconds since the silo last called."""
        return max(self._clock() - record.last_seen, 0.0)

    def available(self) -> list[SiloRecord]:
        """Connected silos that have not declined, in silo-id order."""
        return [r for r in self.all() if self.is_connected(r) and r.declined_reason is None]

    def all(self) -> list[SiloRecord]:
        """Every registered silo, in silo-id order."""
        return [self._silos[key] for key in sorted(self._silos)]
