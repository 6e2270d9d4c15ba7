"""The admin service's read side: status, silos and ledger views of one consistent read of the run."""

from __future__ import annotations

from aslora_coordinator.observation import RunObservation
from aslora_coordinator.orchestrator import Orchestrator
from aslora_coordinator.views import (
    FederatedStatusView,
    LedgerEntryView,
    LedgerView,
    PrivacyEventView,
    SiloView,
    StatusView,
)


def _silo_views(observed: RunObservation) -> list[SiloView]:
    return [
        SiloView(
            silo_id=silo.record.silo_id,
            dataset_size=silo.record.dataset_size,
            connected=silo.connected,
            seconds_since_seen=silo.seconds_since_seen,
            rounds_participated=silo.record.rounds_participated,
            epsilon_reported=silo.record.epsilon_reported,
            epsilon_recomputed=silo.epsilon_recomputed,
            noise_multiplier=silo.record.noise_multiplier,
            sample_rate=silo.record.sample_rate,
            declined_reason=silo.record.declined_reason,
        )
        for silo in observed.silos
    ]


def silo_views(orchestrator: Orchestrator) -> list[SiloView]:
    """Every registered silo, in id order."""
    return _silo_views(orchestrator.observe())


def status_view(orchestrator: Orchestrator) -> StatusView:
    """The run at a glance."""
    observed = orchestrator.observe()
    evaluation = observed.latest_evaluation
    federated = observed.federated_evaluation
    plan = orchestrator.plan
    return StatusView(
        state=observed.state,
        reason=observed.reason,
        run_id=plan.run_id,
        policy=plan.federation.policy,
        task=plan.task.value,
        rounds_completed=observed.rounds_completed,
        rounds_total=plan.federation.rounds,
        open_round=observed.open_round,
        silos=_silo_views(observed),
        accuracy=None if evaluation is None else evaluation[0],
        loss=None if evaluation is None else evaluation[1],
        federated=None
        if federated is None
        else FederatedStatusView(
            federated.round_index,
            federated.accuracy,
            federated.loss,
            federated.silos_released,
            federated.silos_asked,
        ),
    )


def ledger_view(orchestrator: Orchestrator) -> LedgerView:
    """The privacy ledger of every registered silo."""
    privacy = orchestrator.config.privacy
    return LedgerView(
        delta=privacy.delta,
        accountant=privacy.accountant.value,
        budget=orchestrator.ledger_budget,
        entries=[
            LedgerEntryView(
                silo_id=entry.silo_id,
                epsilon_reported=entry.epsilon_reported,
                epsilon_recomputed=entry.epsilon_recomputed,
                events=[
                    PrivacyEventView(e.noise_multiplier, e.sample_rate, e.steps, e.mechanism)
                    for e in entry.events
                ],
            )
            for entry in orchestrator.observe().ledger
        ],
    )
