"""Protobuf forms of the protocol's messages (protobuf stays here, at the gRPC edge)."""

from __future__ import annotations

from aslora.v1 import federation_pb2 as pb
from aslora.v1 import transfer_pb2
from aslora_core.config import (
    DEFAULT_TASK,
    AccountantKind,
    ClippingMode,
    Combiner,
    CurvatureSource,
    FederationSettings,
    GradientSmoothing,
    HeadPooling,
    LoraSettings,
    LrSchedule,
    OptimizerKind,
    PrivacySettings,
    ScoreSettings,
    TaskName,
    TrainingSettings,
    Weighting,
)
from aslora_core.factor_choice import FactorChoice
from aslora_core.federated_evaluation import EvaluationSums
from aslora_rpc import secure_aggregation_wire
from aslora_rpc.enum_wire import EnumWire, WireError
from aslora_rpc.messages import (
    Enrollment,
    EvaluationReply,
    NoTaskYet,
    Registration,
    RunDecline,
    RunEnd,
    RunPlan,
    RunState,
    Task,
    TaskOutcome,
    UploadAnnouncement,
)
from aslora_rpc.transfer import PayloadInfo

RUN_STATES: EnumWire[RunState, pb.RunState.ValueType] = EnumWire(
    "run state",
    {
        RunState.WAITING_FOR_SILOS: pb.RUN_STATE_WAITING_FOR_SILOS,
        RunState.RUNNING: pb.RUN_STATE_RUNNING,
        RunState.PAUSED: pb.RUN_STATE_PAUSED,
        RunState.FINISHED: pb.RUN_STATE_FINISHED,
        RunState.STOPPED: pb.RUN_STATE_STOPPED,
        RunState.FAILED: pb.RUN_STATE_FAILED,
        RunState.QUEUED: pb.RUN_STATE_QUEUED,
        RunState.CANCELLED: pb.RUN_STATE_CANCELLED,
    },
)
FACTOR_CHOICES: EnumWire[FactorChoice, pb.FactorChoice.ValueType] = EnumWire(
    "factor choice",
    {
        FactorChoice.A: pb.FACTOR_CHOICE_A,
        FactorChoice.B: pb.FACTOR_CHOICE_B,
        FactorChoice.BOTH: pb.FACTOR_CHOICE_BOTH,
    },
)


def payload_info_to_proto(info: PayloadInfo) -> transfer_pb2.PayloadInfo:
    """The message form of `info`."""
    return transfer_pb2.PayloadInfo(size_bytes=info.size_bytes, sha256=info.sha256)


def payload_info_from_proto(message: transfer_pb2.PayloadInfo) -> PayloadInfo:
    """`PayloadInfo` from its message; TransferError when the checksum is not 32 bytes."""
    return PayloadInfo(size_bytes=message.size_bytes, sha256=bytes(message.sha256))


def registration_to_proto(registration: Registration) -> pb.RegisterRequest:
    """The RegisterRequest of `registration`."""
    return pb.RegisterRequest(
        protocol_version=registration.protocol_version,
        silo_name=registration.silo_name,
        base_model_fingerprint=registration.base_model_fingerprint,
        dataset_size=registration.dataset_size,
        run_id=registration.run_id,
    )


def registration_from_proto(message: pb.RegisterRequest) -> Registration:
    """The registration a RegisterRequest carries."""
    return Registration(
        protocol_version=message.protocol_version,
        silo_name=message.silo_name,
        base_model_fingerprint=message.base_model_fingerprint,
        dataset_size=message.dataset_size,
        run_id=message.run_id,
    )


def _training_to_proto(training: TrainingSettings) -> pb.TrainingPlan:
    return pb.TrainingPlan(
        local_steps=training.local_steps,
        batch_size=training.batch_size,
        lr=training.lr,
        head_lr=training.head_lr,
        optimizer=training.optimizer.value,
        lr_schedule=training.lr_schedule.value,
        smoothing=training.smoothing.value,
        smoothing_strength=training.smoothing_strength,
        alternation_lr_ratio=training.alternation_lr_ratio,
    )


def _training_from_proto(message: pb.TrainingPlan) -> TrainingSettings:
    return TrainingSettings(
        local_steps=message.local_steps,
        batch_size=message.batch_size,
        lr=message.lr,
        head_lr=message.head_lr if message.HasField("head_lr") else None,
        optimizer=OptimizerKind(message.optimizer),
        lr_schedule=LrSchedule(message.lr_schedule or LrSchedule.CONSTANT.value),
        smoothing=GradientSmoothing(message.smoothing or GradientSmoothing.NONE.value),
        smoothing_strength=message.smoothing_strength,
        alternation_lr_ratio=message.alternation_lr_ratio,
    )


def _privacy_to_proto(privacy: PrivacySettings) -> pb.PrivacyPlan:
    message = pb.PrivacyPlan(
        clip_norm=privacy.clip_norm,
        delta=privacy.delta,
        accountant=privacy.accountant.value,
        clipping=privacy.clipping.value,
        head_clip_norm=privacy.head_clip_norm,
        test_mode_requested=privacy.test_mode,
    )
    if privacy.noise_multiplier is not None:
        message.noise_multiplier = privacy.noise_multiplier
    if privacy.target_epsilon is not None:
        message.target_epsilon = privacy.target_epsilon
    return message


def _privacy_from_proto(message: pb.PrivacyPlan) -> PrivacySettings:
    return PrivacySettings(
        clip_norm=message.clip_norm,
        delta=message.delta,
        accountant=AccountantKind(message.accountant),
        clipping=ClippingMode(message.clipping),
        head_clip_norm=message.head_clip_norm if message.HasField("head_clip_norm") else None,
        test_mode=message.test_mode_requested,
        noise_multiplier=message.noise_multiplier if message.HasField("noise_multiplier") else None,
        target_epsilon=message.target_epsilon if message.HasField("target_epsilon") else None,
    )


def _lora_to_proto(lora: LoraSettings) -> pb.LoraPlan:
    return pb.LoraPlan(
        rank=lora.rank,
        alpha=lora.alpha,
        target_modules=list(lora.target_modules),
        dropout=lora.dropout,
        head_pooling=lora.head_pooling.value,
    )


def _lora_from_proto(message: pb.LoraPlan) -> LoraSettings:
    return LoraSettings(
        rank=message.rank,
        alpha=message.alpha,
        target_modules=tuple(message.target_modules),
        dropout=message.dropout,
        head_pooling=HeadPooling(message.head_pooling or HeadPooling.CLS.value),
    )


def _score_to_proto(score: ScoreSettings) -> pb.ScorePlan:
    return pb.ScorePlan(
        estimator=score.estimator,
        ema=score.ema,
        z=score.z,
        curvature_scale=score.curvature_scale,
        prior_gradient_scale=score.prior_gradient_scale,
        curvature=score.curvature.value,
    )


def _score_from_proto(message: pb.ScorePlan) -> ScoreSettings:
    return ScoreSettings(
        estimator=message.estimator,
        ema=message.ema,
        z=message.z,
        curvature_scale=message.curvature_scale,
        prior_gradient_scale=message.prior_gradient_scale,
        curvature=CurvatureSource(message.curvature or CurvatureSource.CONSTANT.value),
    )


def _federation_to_proto(federation: FederationSettings) -> pb.FederationPlan:
    return pb.FederationPlan(
        policy=federation.policy,
        rounds=federation.rounds,
        seed=federation.seed,
        score=_score_to_proto(federation.score),
        combiner=federation.combiner.value,
        trim_fraction=federation.trim_fraction,
        weighting=federation.weighting.value,
        evaluation_interval=federation.evaluation_interval,
        silo_evaluation=federation.silo_evaluation,
        evaluation_loss_bound=federation.evaluation_loss_bound,
        evaluation_noise_multiplier=federation.evaluation_noise_multiplier,
        secure_aggregation=federation.secure_aggregation,
    )


def _federation_from_proto(message: pb.FederationPlan) -> FederationSettings:
    """The plan's federation settings; an unknown policy, combiner or weighting is a ValueError."""
    return FederationSettings(
        policy=message.policy,
        rounds=message.rounds,
        seed=message.seed,
        score=_score_from_proto(message.score),
        combiner=Combiner(message.combiner),
        trim_fraction=message.trim_fraction,
        weighting=Weighting(message.weighting),
        evaluation_interval=message.evaluation_interval,
        silo_evaluation=message.silo_evaluation,
        evaluation_loss_bound=message.evaluation_loss_bound,
        evaluation_noise_multiplier=message.evaluation_noise_multiplier,
        secure_aggregation=message.secure_aggregation,
    )


def plan_to_proto(plan: RunPlan) -> pb.RunPlan:
    """The RunPlan message of `plan`."""
    return pb.RunPlan(
        run_id=plan.run_id,
        federation=_federation_to_proto(plan.federation),
        task=plan.task.value,
        label_names=list(plan.label_names),
        lora=_lora_to_proto(plan.lora),
        training=_training_to_proto(plan.training),
        privacy=_privacy_to_proto(plan.privacy),
        chunk_bytes=plan.chunk_bytes,
        base_model_fingerprint=plan.base_model_fingerprint,
    )


def plan_from_proto(plan: pb.RunPlan) -> RunPlan:
    """The run plan a RunPlan message carries; WireError for unknown names or invalid settings."""
    try:
        return RunPlan(
            run_id=plan.run_id,
            federation=_federation_from_proto(plan.federation),
            task=TaskName(plan.task or DEFAULT_TASK.value),
            label_names=tuple(plan.label_names),
            lora=_lora_from_proto(plan.lora),
            training=_training_from_proto(plan.training),
            privacy=_privacy_from_proto(plan.privacy),
            chunk_bytes=plan.chunk_bytes,
            base_model_fingerprint=plan.base_model_fingerprint,
        )
    except ValueError as error:
        raise WireError(f"the coordinator's run plan is not usable: {error}") from error


def offer_to_proto(plan: RunPlan | None) -> pb.GetRunResponse:
    """The GetRunResponse offering `plan` (None: no run to offer yet)."""
    return pb.GetRunResponse() if plan is None else pb.GetRunResponse(plan=plan_to_proto(plan))


def offer_from_proto(message: pb.GetRunResponse) -> RunPlan | None:
    """The plan a GetRunResponse offers, or None."""
    return plan_from_proto(message.plan) if message.HasField("plan") else None


def run_decline_to_proto(decline: RunDecline) -> pb.DeclineRunRequest:
    """The DeclineRunRequest of `decline`."""
    return pb.DeclineRunRequest(
        silo_name=decline.silo_name,
        run_id=decline.run_id,
        reason=decline.reason,
        epsilon_spent=decline.epsilon_spent,
    )


def run_decline_from_proto(message: pb.DeclineRunRequest) -> RunDecline:
    """The decline a DeclineRunRequest carries."""
    return RunDecline(message.silo_name, message.run_id, message.reason, message.epsilon_spent)


def enrollment_to_proto(enrollment: Enrollment) -> pb.RegisterResponse:
    """The RegisterResponse of `enrollment`."""
    return pb.RegisterResponse(
        protocol_version=enrollment.protocol_version,
        silo_id=enrollment.silo_id,
        plan=plan_to_proto(enrollment.plan),
    )


def enrollment_from_proto(message: pb.RegisterResponse) -> Enrollment:
    """The enrollment a RegisterResponse carries; WireError for unknown names or invalid settings."""
    return Enrollment(
        protocol_version=message.protocol_version,
        silo_id=message.silo_id,
        plan=plan_from_proto(message.plan),
    )


def task_to_proto(task: Task) -> pb.Task:
    """The Task message of `task`."""
    message = pb.Task(
        task_id=task.task_id,
        round_index=task.round_index,
        selection=[
            pb.LayerSelection(layer=layer, choice=FACTOR_CHOICES.to_proto(choice))
            for layer, choice in sorted(task.selection.items())
        ],
        noise_multiplier=task.noise_multiplier,
        sample_rate=task.sample_rate,
        local_steps=task.local_steps,
        adapter=payload_info_to_proto(task.adapter),
        seconds_to_deadline=task.seconds_to_deadline,
        evaluate=task.evaluate,
    )
    if task.secure_aggregation is not None:
        message.secure_aggregation.CopyFrom(secure_aggregation_wire.plan_to_proto(task.secure_aggregation))
    return message


def task_from_proto(message: pb.Task) -> Task:
    """The task a Task message carries; WireError for an unknown factor choice."""
    selection: dict[str, FactorChoice] = {}
    for item in message.selection:
        if item.layer in selection:
            raise WireError(f"layer {item.layer!r} is selected twice")
        selection[item.layer] = FACTOR_CHOICES.from_proto(item.choice)
    return Task(
        task_id=message.task_id,
        round_index=message.round_index,
        selection=selection,
        noise_multiplier=message.noise_multiplier,
        sample_rate=message.sample_rate,
        local_steps=message.local_steps,
        adapter=payload_info_from_proto(message.adapter),
        seconds_to_deadline=message.seconds_to_deadline,
        evaluate=message.evaluate,
        secure_aggregation=(
            secure_aggregation_wire.plan_from_proto(message.secure_aggregation)
            if message.HasField("secure_aggregation")
            else None
        ),
    )


def task_outcome_to_proto(outcome: TaskOutcome) -> pb.WaitForTaskResponse:
    """The WaitForTaskResponse for a task, the run's end, or nothing yet."""
    if isinstance(outcome, Task):
        return pb.WaitForTaskResponse(task=task_to_proto(outcome))
    if isinstance(outcome, RunEnd):
        return pb.WaitForTaskResponse(
            run_ended=pb.RunEnded(state=RUN_STATES.to_proto(outcome.state), reason=outcome.reason)
        )
    return pb.WaitForTaskResponse(no_task=pb.NoTask(state=RUN_STATES.to_proto(outcome.state)))


def task_outcome_from_proto(message: pb.WaitForTaskResponse) -> TaskOutcome:
    """What a WaitForTaskResponse says."""
    which = message.WhichOneof("outcome")
    if which == "task":
        return task_from_proto(message.task)
    if which == "run_ended":
        return RunEnd(state=RUN_STATES.from_proto(message.run_ended.state), reason=message.run_ended.reason)
    if which == "no_task":
        return NoTaskYet(state=RUN_STATES.from_proto(message.no_task.state))
    raise WireError("empty WaitForTaskResponse")


def upload_header_to_proto(announcement: UploadAnnouncement) -> pb.UploadUpdateRequest:
    """The first message of an upload."""
    return pb.UploadUpdateRequest(
        header=pb.UploadHeader(
            silo_id=announcement.silo_id,
            task_id=announcement.task_id,
            update=payload_info_to_proto(announcement.update),
            epsilon_spent=announcement.epsilon_spent,
            masked=announcement.masked,
        )
    )


def upload_header_from_proto(message: pb.UploadUpdateRequest) -> UploadAnnouncement:
    """The announcement in an upload's first message; WireError when it is not a header."""
    if message.WhichOneof("part") != "header":
        raise WireError("an upload must start with its header")
    header = message.header
    return UploadAnnouncement(
        silo_id=header.silo_id,
        task_id=header.task_id,
        update=payload_info_from_proto(header.update),
        epsilon_spent=header.epsilon_spent,
        masked=header.masked,
    )


def evaluation_reply_to_proto(reply: EvaluationReply) -> pb.ReleaseEvaluationRequest:
    """The ReleaseEvaluationRequest of `reply`."""
    message = pb.ReleaseEvaluationRequest(
        silo_id=reply.silo_id,
        task_id=reply.task_id,
        noise_multiplier=reply.noise_multiplier,
        epsilon_spent=reply.epsilon_spent,
    )
    if reply.sums is None:
        message.declined_reason = reply.declined_reason
    else:
        message.sums.CopyFrom(
            pb.EvaluationSums(
                loss_sum=reply.sums.loss_sum, correct=reply.sums.correct, examples=reply.sums.examples
            )
        )
    return message


def evaluation_reply_from_proto(message: pb.ReleaseEvaluationRequest) -> EvaluationReply:
    """The reply a ReleaseEvaluationRequest carries; WireError when it has neither sums nor a reason, or
    sums that are not finite."""
    outcome = message.WhichOneof("outcome")
    if outcome is None:
        raise WireError("an evaluation reply needs its sums or the reason it declines")
    sums = None
    if outcome == "sums":
        try:
            sums = EvaluationSums(message.sums.loss_sum, message.sums.correct, message.sums.examples)
        except ValueError as error:
            raise WireError(str(error)) from error
    return EvaluationReply(
        silo_id=message.silo_id,
        task_id=message.task_id,
        sums=sums,
        declined_reason=message.declined_reason,
        noise_multiplier=message.noise_multiplier,
        epsilon_spent=message.epsilon_spent,
    )
