"""Protobuf forms of the admin views (encoded by the servicer, decoded by the operator's client)."""

from __future__ import annotations

from aslora.v1 import admin_pb2 as pb
from aslora_coordinator.event_log import EventKind, FederationEvent
from aslora_coordinator.export_format import ExportFormat
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
from aslora_core.config import DEFAULT_TASK
from aslora_core.mechanism import Mechanism
from aslora_rpc.enum_wire import EnumWire
from aslora_rpc.wire import RUN_STATES

EXPORT_FORMATS: EnumWire[ExportFormat, pb.ExportFormat.ValueType] = EnumWire(
    "export format",
    {
        ExportFormat.PEFT: pb.EXPORT_FORMAT_PEFT,
        ExportFormat.ADAPTER_STATE: pb.EXPORT_FORMAT_ADAPTER_STATE,
    },
)


def event_to_proto(event: FederationEvent) -> pb.FederationEvent:
    """The FederationEvent message of a lifecycle event."""
    return pb.FederationEvent(
        sequence=event.sequence,
        time=event.time,
        run_id=event.run_id,
        kind=event.kind.value,
        message=event.message,
    )


def event_from_proto(message: pb.FederationEvent) -> FederationEvent:
    """The lifecycle event of a FederationEvent message."""
    return FederationEvent(
        sequence=message.sequence,
        time=message.time,
        run_id=message.run_id,
        kind=EventKind(message.kind),
        message=message.message,
    )


def silo_to_proto(view: SiloView) -> pb.SiloStatus:
    """The SiloStatus message of a silo view."""
    return pb.SiloStatus(
        silo_id=view.silo_id,
        dataset_size=view.dataset_size,
        connected=view.connected,
        seconds_since_seen=view.seconds_since_seen,
        rounds_participated=view.rounds_participated,
        epsilon_reported=view.epsilon_reported,
        epsilon_recomputed=view.epsilon_recomputed,
        noise_multiplier=view.noise_multiplier,
        sample_rate=view.sample_rate,
        declined=view.declined_reason is not None,
        declined_reason=view.declined_reason or "",
        evicted=view.evicted,
    )


def silo_from_proto(message: pb.SiloStatus) -> SiloView:
    """The silo view of a SiloStatus message."""
    return SiloView(
        silo_id=message.silo_id,
        dataset_size=message.dataset_size,
        connected=message.connected,
        seconds_since_seen=message.seconds_since_seen,
        rounds_participated=message.rounds_participated,
        epsilon_reported=message.epsilon_reported,
        epsilon_recomputed=message.epsilon_recomputed,
        noise_multiplier=message.noise_multiplier,
        sample_rate=message.sample_rate,
        declined_reason=message.declined_reason if message.declined else None,
        evicted=message.evicted,
    )


def status_to_proto(view: StatusView) -> pb.GetStatusResponse:
    """The GetStatusResponse of a status view."""
    return pb.GetStatusResponse(
        state=RUN_STATES.to_proto(view.state),
        reason=view.reason,
        run_id=view.run_id,
        policy=view.policy,
        task=view.task,
        rounds_completed=view.rounds_completed,
        rounds_total=view.rounds_total,
        open_round=view.open_round,
        silos=[silo_to_proto(silo) for silo in view.silos],
        accuracy=view.accuracy,
        loss=view.loss,
        federated_evaluation=None if view.federated is None else _federated_to_proto(view.federated),
        waiting_for=view.waiting_for,
    )


def status_from_proto(message: pb.GetStatusResponse) -> StatusView:
    """The status view of a GetStatusResponse."""
    return StatusView(
        state=RUN_STATES.from_proto(message.state),
        reason=message.reason,
        run_id=message.run_id,
        policy=message.policy,
        task=message.task or DEFAULT_TASK.value,
        rounds_completed=message.rounds_completed,
        rounds_total=message.rounds_total,
        open_round=message.open_round if message.HasField("open_round") else None,
        silos=[silo_from_proto(silo) for silo in message.silos],
        accuracy=message.accuracy if message.HasField("accuracy") else None,
        loss=message.loss if message.HasField("loss") else None,
        federated=_federated_from_proto(message.federated_evaluation)
        if message.HasField("federated_evaluation")
        else None,
        waiting_for=message.waiting_for,
    )


def _federated_to_proto(view: FederatedStatusView) -> pb.FederatedEvaluationStatus:
    return pb.FederatedEvaluationStatus(
        round=view.round_index,
        accuracy=view.accuracy,
        loss=view.loss,
        silos_released=view.silos_released,
        silos_asked=view.silos_asked,
    )


def _federated_from_proto(message: pb.FederatedEvaluationStatus) -> FederatedStatusView:
    return FederatedStatusView(
        round_index=message.round,
        accuracy=message.accuracy if message.HasField("accuracy") else None,
        loss=message.loss if message.HasField("loss") else None,
        silos_released=message.silos_released,
        silos_asked=message.silos_asked,
    )


def ledger_to_proto(view: LedgerView) -> pb.GetPrivacyLedgerResponse:
    """The GetPrivacyLedgerResponse of a ledger view."""
    return pb.GetPrivacyLedgerResponse(
        delta=view.delta,
        accountant=view.accountant,
        budget=view.budget,
        entries=[
            pb.PrivacyLedgerEntry(
                silo_id=entry.silo_id,
                epsilon_reported=entry.epsilon_reported,
                epsilon_recomputed=entry.epsilon_recomputed,
                events=[
                    pb.PrivacyEventRecord(
                        noise_multiplier=e.noise_multiplier,
                        sample_rate=e.sample_rate,
                        steps=e.steps,
                        mechanism=e.mechanism.value,
                    )
                    for e in entry.events
                ],
            )
            for entry in view.entries
        ],
    )


def ledger_from_proto(message: pb.GetPrivacyLedgerResponse) -> LedgerView:
    """The ledger view of a GetPrivacyLedgerResponse."""
    return LedgerView(
        delta=message.delta,
        accountant=message.accountant,
        budget=message.budget if message.HasField("budget") else None,
        entries=[
            LedgerEntryView(
                silo_id=entry.silo_id,
                epsilon_reported=entry.epsilon_reported,
                epsilon_recomputed=entry.epsilon_recomputed,
                events=[
                    PrivacyEventView(
                        e.noise_multiplier,
                        e.sample_rate,
                        e.steps,
                        Mechanism(e.mechanism or Mechanism.DP_SGD.value),
                    )
                    for e in entry.events
                ],
            )
            for entry in message.entries
        ],
    )


def run_to_proto(view: RunView) -> pb.RunSummary:
    """The RunSummary message of a run view."""
    return pb.RunSummary(
        run_id=view.run_id,
        state=RUN_STATES.to_proto(view.state),
        reason=view.reason,
        policy=view.policy,
        task=view.task,
        rounds_completed=view.rounds_completed,
        rounds_total=view.rounds_total,
        epsilon_spent=view.epsilon_spent,
        submitted_at=view.submitted_at,
        started_at=view.started_at,
        ended_at=view.ended_at,
        wall_seconds=view.wall_seconds,
    )


def run_from_proto(message: pb.RunSummary) -> RunView:
    """The run view of a RunSummary message."""
    return RunView(
        run_id=message.run_id,
        state=RUN_STATES.from_proto(message.state),
        reason=message.reason,
        policy=message.policy,
        task=message.task,
        rounds_completed=message.rounds_completed,
        rounds_total=message.rounds_total,
        epsilon_spent=message.epsilon_spent,
        submitted_at=message.submitted_at,
        started_at=message.started_at if message.HasField("started_at") else None,
        ended_at=message.ended_at if message.HasField("ended_at") else None,
        wall_seconds=message.wall_seconds,
    )


def history_to_proto(view: RunHistoryView) -> pb.GetRunHistoryResponse:
    """The GetRunHistoryResponse of a run's history."""
    return pb.GetRunHistoryResponse(
        run_id=view.run_id,
        initial_accuracy=view.initial_accuracy,
        initial_loss=view.initial_loss,
        rounds=[
            pb.RoundHistory(
                round=item.round_index,
                accuracy=item.accuracy,
                loss=item.loss,
                epsilon=item.epsilon,
                silo_epsilons=item.silo_epsilons,
                layers=[
                    pb.LayerRound(
                        layer=layer.layer,
                        factor=layer.factor,
                        score_a=_score_to_proto(layer.score_a),
                        score_b=_score_to_proto(layer.score_b),
                    )
                    for layer in item.layers
                ],
            )
            for item in view.rounds
        ],
        federated_evaluations=[_federated_to_proto(item) for item in view.federated],
    )


def _score_to_proto(view: FactorScoreView | None) -> pb.FactorScore | None:
    return None if view is None else pb.FactorScore(mean=view.mean, standard_error=view.standard_error)


def history_from_proto(message: pb.GetRunHistoryResponse) -> RunHistoryView:
    """The run history of a GetRunHistoryResponse."""
    return RunHistoryView(
        run_id=message.run_id,
        initial_accuracy=message.initial_accuracy if message.HasField("initial_accuracy") else None,
        initial_loss=message.initial_loss if message.HasField("initial_loss") else None,
        rounds=[
            RoundHistoryView(
                round_index=item.round,
                accuracy=item.accuracy,
                loss=item.loss,
                epsilon=item.epsilon,
                silo_epsilons=dict(item.silo_epsilons),
                layers=[
                    LayerRoundView(
                        layer=layer.layer,
                        factor=layer.factor,
                        score_a=_score_from_proto(layer.score_a) if layer.HasField("score_a") else None,
                        score_b=_score_from_proto(layer.score_b) if layer.HasField("score_b") else None,
                    )
                    for layer in item.layers
                ],
            )
            for item in message.rounds
        ],
        federated=[_federated_from_proto(item) for item in message.federated_evaluations],
    )


def _score_from_proto(message: pb.FactorScore) -> FactorScoreView:
    return FactorScoreView(mean=message.mean, standard_error=message.standard_error)
