"""The admin service's read side: status, silos and ledger views of the orchestrator's state."""

from __future__ import annotations

from aslora_coordinator.orchestrator import Orchestrator
from aslora_coordinator.views import LedgerEntryView, LedgerView, PrivacyEventView, SiloView, StatusView


def silo_views(orchestrator: Orchestrator) -> list[SiloView]:
    """Every registered silo, in id order."""
    with orchestrator.lock:
        registry, ledger = orchestrator.registry, orchestrator.ledger
        return [
            SiloView(
                silo_id=record.silo_id,
                dataset_size=record.dataset_size,
                connected=registry.is_connected(record),
                seconds_since_seen=registry.seconds_since_seen(record),
                rounds_participated=record.rounds_participated,
                epsilon_reported=record.epsilon_reported,
                epsilon_recomputed=ledger.recomputed(record.silo_id),
                noise_multiplier=record.noise_multiplier,
                sample_rate=record.sample_rate,
                declined_reason=record.declined_reason,
            )
            for record in registry.all()
        ]


def status_view(orchestrator: Orchestrator) -> StatusView:
    """The run at a glance."""
    silos = silo_views(orchestrator)
    with orchestrator.lock:
        evaluation = orchestrator.latest_evaluation
        return StatusView(
            state=orchestrator.state,
            reason=orchestrator.reason,
            run_id=orchestrator.plan.run_id,
            policy=orchestrator.plan.policy,
            task=orchestrator.plan.task.value,
            rounds_completed=orchestrator.rounds_completed,
            rounds_total=orchestrator.plan.rounds,
            open_round=None if orchestrator.open_round is None else orchestrator.open_round.index,
            silos=silos,
            accuracy=None if evaluation is None else evaluation[0],
            loss=None if evaluation is None else evaluation[1],
        )


def ledger_view(orchestrator: Orchestrator) -> LedgerView:
    """The privacy ledger of every registered silo."""
    with orchestrator.lock:
        ledger = orchestrator.ledger
        entries = ledger.entries([record.silo_id for record in orchestrator.registry.all()])
        return LedgerView(
            delta=ledger.privacy.delta,
            accountant=ledger.privacy.accountant.value,
            budget=ledger.budget,
            entries=[
                LedgerEntryView(
                    silo_id=entry.silo_id,
                    epsilon_reported=entry.epsilon_reported,
                    epsilon_recomputed=entry.epsilon_recomputed,
                    events=[
                        PrivacyEventView(e.noise_multiplier, e.sample_rate, e.steps) for e in entry.events
                    ],
                )
                for entry in entries
            ],
        )
