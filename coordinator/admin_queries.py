"""The admin service's read side: status, silos and ledger views of one consistent read of a run (the
active run's live observation, or an ended run's last checkpoint)."""

from __future__ import annotations

from dataclasses import dataclass

from aslora_coordinator.ledger import PrivacyLedger
from aslora_coordinator.observation import RunObservation, SiloObservation
from aslora_coordinator.run_entry import RunEntry
from aslora_coordinator.state import CoordinatorSnapshot
from aslora_coordinator.views import (
    FactorScoreView,
    FederatedStatusView,
    LayerRoundView,
    LedgerEntryView,
    LedgerView,
    PrivacyEventView,
    RoundHistoryView,
    RunHistoryView,
    RunView,
    SiloView,
    StatusView,
)
from aslora_core.config import PrivacySettings
from aslora_core.federated_evaluation import FederatedEvaluation
from aslora_core.privacy import PrivacyAccountant
from aslora_core.results import RoundRecord, RunResult
from aslora_rpc.messages import RunState


@dataclass(frozen=True)
class RunFacts:
    """What the views say of a run besides its observation: its id, policy, task, length and privacy."""

    run_id: str
    policy: str
    task: str
    rounds_total: int
    privacy: PrivacySettings
    budget: float | None


def run_view(entry: RunEntry) -> RunView:
    """A submitted run as the operator sees it (without the settings it was submitted with)."""
    return RunView(
        run_id=entry.run_id,
        state=entry.state,
        reason=entry.reason,
        policy=entry.policy,
        task=entry.task,
        rounds_completed=entry.rounds_completed,
        rounds_total=entry.rounds_total,
        epsilon_spent=entry.epsilon_spent,
        submitted_at=entry.submitted_at,
        started_at=entry.started_at,
        ended_at=entry.ended_at,
        wall_seconds=entry.wall_seconds,
    )


def silo_views(observed: RunObservation) -> list[SiloView]:
    """Every silo of the run (registered, or declined the run), in id order."""
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
            evicted=silo.record.evicted,
        )
        for silo in observed.silos
    ]


def status_view(facts: RunFacts, observed: RunObservation) -> StatusView:
    """The run at a glance."""
    evaluation = observed.latest_evaluation
    federated = observed.federated_evaluation
    return StatusView(
        state=observed.state,
        reason=observed.reason,
        run_id=facts.run_id,
        policy=facts.policy,
        task=facts.task,
        rounds_completed=observed.rounds_completed,
        rounds_total=facts.rounds_total,
        open_round=observed.open_round,
        silos=silo_views(observed),
        waiting_for=observed.waiting_for,
        accuracy=None if evaluation is None else evaluation[0],
        loss=None if evaluation is None else evaluation[1],
        federated=None if federated is None else _federated_view(federated),
    )


def ledger_view(facts: RunFacts, observed: RunObservation) -> LedgerView:
    """The privacy ledger of every silo of the run."""
    return LedgerView(
        delta=facts.privacy.delta,
        accountant=facts.privacy.accountant.value,
        budget=facts.budget,
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
            for entry in observed.ledger
        ],
    )


def history_view(run_id: str, result: RunResult) -> RunHistoryView:
    """The run's figures round by round, from its results so far."""
    return RunHistoryView(
        run_id=run_id,
        initial_accuracy=result.initial_accuracy,
        initial_loss=result.initial_loss,
        rounds=[_round_history(record) for record in result.rounds],
        federated=[_federated_view(evaluation) for evaluation in result.federated_evaluations],
    )


def _round_history(record: RoundRecord) -> RoundHistoryView:
    scores = record.scores or {}
    return RoundHistoryView(
        round_index=record.round,
        accuracy=record.accuracy,
        loss=record.loss,
        epsilon=record.epsilon,
        silo_epsilons=dict(record.silo_epsilons or {}),
        layers=[
            LayerRoundView(
                layer=layer,
                factor=factor,
                score_a=_factor_score(scores.get(layer, {}).get("A")),
                score_b=_factor_score(scores.get(layer, {}).get("B")),
            )
            for layer, factor in record.selection.items()
        ],
    )


def _factor_score(pair: list[float] | None) -> FactorScoreView | None:
    return None if pair is None else FactorScoreView(mean=pair[0], standard_error=pair[1])


def _federated_view(evaluation: FederatedEvaluation) -> FederatedStatusView:
    return FederatedStatusView(
        evaluation.round_index,
        evaluation.accuracy,
        evaluation.loss,
        evaluation.silos_released,
        evaluation.silos_asked,
    )


def observation_of_checkpoint(
    snapshot: CoordinatorSnapshot, state: RunState, reason: str, facts: RunFacts
) -> RunObservation:
    """A run that is not being served, as its last checkpoint left it (no silo is connected to it)."""
    ledger = PrivacyLedger(facts.privacy, facts.budget)
    silos = []
    for silo in snapshot.silos:
        ledger.restore(
            silo.silo_id,
            PrivacyAccountant.from_dict(silo.ledger, facts.privacy.accountant),
            silo.epsilon_reported,
        )
        silos.append(SiloObservation(silo.record(), False, 0.0, ledger.recomputed(silo.silo_id)))
    result = RunResult.from_json(snapshot.results)
    latest = (result.rounds[-1].accuracy, result.rounds[-1].loss) if result.rounds else None
    federated = result.federated_evaluations[-1] if result.federated_evaluations else None
    return RunObservation(
        state=state,
        reason=reason,
        rounds_completed=snapshot.rounds_completed,
        open_round=None,
        latest_evaluation=latest,
        federated_evaluation=federated,
        silos=tuple(silos),
        ledger=tuple(ledger.entries([silo.silo_id for silo in snapshot.silos])),
    )
