"""The silo's lifetime privacy ledger on disk: the mechanism events of every run it took part in, each
tagged with its run, composed by its own accountant at its own delta."""

from __future__ import annotations

import logging
from pathlib import Path

from aslora_core.privacy import PrivacyAccountant
from aslora_silo.config import SiloPrivacy
from aslora_silo.errors import SiloError

LOGGER = logging.getLogger(__name__)
LEDGER_FILE = "privacy-ledger.json"


class SiloLedger:
    """The events this silo was charged for, in LEDGER_FILE; which accountant composes them, and at which
    delta, is the silo's own setting (so the ledger outlives a change of accountant)."""

    def __init__(self, state_dir: Path, privacy: SiloPrivacy) -> None:
        """Read the ledger in `state_dir` (none yet: nothing spent); SiloError if it exists but cannot be
        read, since starting from an empty one would forget what was spent."""
        self.path = state_dir / LEDGER_FILE
        self.delta = privacy.max_delta
        self.accountant = PrivacyAccountant(privacy.accountant)
        self.run_id = ""
        """The run whose steps `record` charges (set when the silo joins a run)."""
        if self.path.exists():
            try:
                self.accountant = PrivacyAccountant.load(self.path, privacy.accountant)
            except (OSError, ValueError) as error:
                raise SiloError(f"the privacy ledger {self.path} cannot be read: {error}") from error
            LOGGER.info("privacy ledger loaded: epsilon so far %.4f at delta %g", self.spent(), self.delta)

    def spent(self) -> float:
        """Epsilon spent so far over every run, at this silo's delta, by its own accountant."""
        return self.accountant.epsilon(self.delta)

    def spent_in_run(self, run_id: str) -> float:
        """Epsilon of one run's events alone, at this silo's delta."""
        return self.accountant.of_run(run_id).epsilon(self.delta)

    def begin_run(self, run_id: str) -> None:
        """Charge the steps recorded from now on to run `run_id`."""
        self.run_id = run_id

    def snapshot(self) -> PrivacyAccountant:
        """A copy of the ledger as it is now (what a task is charged on top of)."""
        return PrivacyAccountant(self.accountant.kind, self.accountant.history)

    def rewind(self, before: PrivacyAccountant) -> None:
        """Go back to the ledger as it was before a task that was charged but never finished (the silo was
        killed while training it), so that training it again charges it once in all."""
        self.accountant = PrivacyAccountant(self.accountant.kind, before.history)

    def record(self, noise_multiplier: float, sample_rate: float, steps: int = 1) -> None:
        """Charge `steps` steps and write the ledger: the trainer calls this before it reads a record, so a
        crash mid-round never under-counts."""
        charged = self.snapshot()
        charged.record(noise_multiplier, sample_rate, steps, self.run_id)
        charged.save(self.path)
        self.accountant = charged

    def record_evaluation(self, noise_multiplier: float) -> None:
        """Charge one evaluation release and write the ledger, before the release is computed."""
        charged = self.snapshot()
        charged.record_evaluation(noise_multiplier, self.run_id)
        charged.save(self.path)
        self.accountant = charged

    def epsilon(self, delta: float) -> float:
        """Epsilon spent so far at `delta`, by this silo's accountant."""
        return self.accountant.epsilon(delta)
