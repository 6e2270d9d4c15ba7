"""The coordinator's privacy ledger: per silo, what it reported and the coordinator's own recomputation."""

from __future__ import annotations

import math
from dataclasses import dataclass

from aslora_coordinator.registry import SiloRecord
from aslora_core.config import PrivacySettings
from aslora_core.privacy import PrivacyAccountant, PrivacyEvent


@dataclass(frozen=True)
class LedgerEntry:
    """One silo's line in the ledger."""

    silo_id: str
    epsilon_reported: float
    epsilon_recomputed: float
    events: tuple[PrivacyEvent, ...]


class PrivacyLedger:
    """Recomputes each silo's epsilon from the published (sigma, q, steps) of every task it was handed, and
    the noise multiplier of every evaluation it released."""

    def __init__(self, privacy: PrivacySettings, budget: float | None) -> None:
        """`budget`: the per-silo epsilon no task may take the recomputation past (None: no budget)."""
        self.privacy = privacy
        self.budget = budget
        self._accountants: dict[str, PrivacyAccountant] = {}
        self._reported: dict[str, float] = {}

    def _accountant(self, silo_id: str) -> PrivacyAccountant:
        return self._accountants.setdefault(silo_id, PrivacyAccountant(self.privacy.accountant))

    def charge(self, silo_id: str, noise_multiplier: float, sample_rate: float, steps: int) -> None:
        """Record a task handed to the silo (charged whether or not its update arrives)."""
        self._accountant(silo_id).record(noise_multiplier, sample_rate, steps)

    def charge_evaluation(self, silo_id: str, noise_multiplier: float) -> None:
        """Record an evaluation the silo released, at the noise multiplier it used."""
        self._accountant(silo_id).record_evaluation(noise_multiplier)

    def report(self, silo_id: str, epsilon: float) -> None:
        """Record the epsilon the silo says it has spent (its own accountant's figure)."""
        if math.isfinite(epsilon) and epsilon >= 0:
            self._reported[silo_id] = epsilon

    def note_reported(self, record: SiloRecord, epsilon: float) -> None:
        """Keep the highest epsilon the silo reported, on its record and in its ledger line."""
        record.epsilon_reported = max(record.epsilon_reported, epsilon)
        self.report(record.silo_id, record.epsilon_reported)

    def would_exceed(self, silo_id: str, noise_multiplier: float, sample_rate: float, steps: int) -> bool:
        """Whether one more such task would take the recomputed epsilon past the budget."""
        if self.budget is None:
            return False
        return self._accountant(silo_id).would_exceed(
            noise_multiplier, sample_rate, steps, self.privacy.delta, self.budget
        )

    def recomputed(self, silo_id: str) -> float:
        """The coordinator's epsilon for the silo at the run's delta."""
        return self._accountant(silo_id).epsilon(self.privacy.delta)

    def reported(self, silo_id: str) -> float:
        """The silo's last reported epsilon (0 before its first report)."""
        return self._reported.get(silo_id, 0.0)

    def entries(self, silo_ids: list[str]) -> list[LedgerEntry]:
        """The ledger lines of the given silos, in that order."""
        return [
            LedgerEntry(
                silo_id=silo_id,
                epsilon_reported=self.reported(silo_id),
                epsilon_recomputed=self.recomputed(silo_id),
                events=self._accountant(silo_id).history,
            )
            for silo_id in silo_ids
        ]

    def restore(self, silo_id: str, accountant: PrivacyAccountant, reported: float) -> None:
        """Put back one silo's recomputation and reported epsilon from a checkpoint."""
        self._accountants[silo_id] = accountant
        self.report(silo_id, reported)

    def accountant_state(self, silo_id: str) -> dict[str, object]:
        """The recomputation of one silo as `PrivacyAccountant.to_dict()` (for checkpoints)."""
        return self._accountant(silo_id).to_dict()
