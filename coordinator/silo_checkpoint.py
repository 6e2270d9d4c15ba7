"""A run's silos as its checkpoint keeps them (registry record, ledger line, planned sigma), and back."""

from __future__ import annotations

from aslora_coordinator.ledger import PrivacyLedger
from aslora_coordinator.registry import SiloRegistry
from aslora_coordinator.sigma_plans import SigmaPlans
from aslora_coordinator.state import SiloSnapshot
from aslora_core.config import PrivacySettings
from aslora_core.privacy import PrivacyAccountant


def silo_snapshots(registry: SiloRegistry, ledger: PrivacyLedger) -> tuple[SiloSnapshot, ...]:
    """Every registered silo's record with its ledger line, in silo-id order."""
    return tuple(
        SiloSnapshot(
            silo_id=r.silo_id,
            dataset_size=r.dataset_size,
            sample_rate=r.sample_rate,
            noise_multiplier=r.noise_multiplier,
            rounds_participated=r.rounds_participated,
            epsilon_reported=r.epsilon_reported,
            declined_reason=r.declined_reason,
            ledger=ledger.accountant_state(r.silo_id),
            evicted=r.evicted,
        )
        for r in registry.all()
    )


def restore_silos(
    silos: tuple[SiloSnapshot, ...],
    privacy: PrivacySettings,
    *,
    registry: SiloRegistry,
    ledger: PrivacyLedger,
    sigmas: SigmaPlans,
) -> None:
    """Put back each checkpointed silo's record, its planned sigma (unless it declined the run) and its
    ledger line."""
    for silo in silos:
        registry.restore(silo.record())
        if silo.dataset_size > 0:
            sigmas.restore(silo.sample_rate, silo.noise_multiplier)
        recomputed = PrivacyAccountant.from_dict(silo.ledger, privacy.accountant)
        ledger.restore(silo.silo_id, recomputed, silo.epsilon_reported)
