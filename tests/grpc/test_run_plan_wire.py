"""The run plan crosses the wire unchanged, including the head's pooling, its own clip norm and the
learning-rate schedule; a plan naming no known policy is refused."""

from __future__ import annotations

import dataclasses

import pytest

from aslora_core.config import (
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
from aslora_core.policy_traits import POLICY_NAMES
from aslora_rpc.enum_wire import WireError
from aslora_rpc.messages import Enrollment, RunPlan
from aslora_rpc.wire import enrollment_from_proto, enrollment_to_proto


def _enrollment(
    pooling: HeadPooling, head_clip_norm: float | None, schedule: LrSchedule = LrSchedule.CONSTANT
) -> Enrollment:
    plan = RunPlan(
        run_id="run",
        federation=FederationSettings(
            policy="aslora",
            rounds=4,
            seed=3,
            score=ScoreSettings(
                estimator="hybrid", z=1.5, curvature=CurvatureSource.ESTIMATED, curvature_scale=0.02
            ),
            combiner=Combiner.TRIMMED_MEAN,
            trim_fraction=0.1,
            weighting=Weighting.UNIFORM,
            evaluation_interval=2,
            silo_evaluation=True,
            evaluation_loss_bound=3.5,
            evaluation_noise_multiplier=12.0,
        ),
        task=TaskName.SEQUENCE_CLASSIFICATION,
        label_names=("negative", "positive"),
        lora=LoraSettings(rank=4, alpha=8, head_pooling=pooling),
        training=TrainingSettings(
            local_steps=3,
            batch_size=512,
            lr=4.0,
            head_lr=20.0,
            optimizer=OptimizerKind.SGD,
            lr_schedule=schedule,
            smoothing=GradientSmoothing.LAPLACIAN,
            smoothing_strength=0.5,
            alternation_lr_ratio=3.0,
        ),
        privacy=PrivacySettings(
            clip_norm=0.1,
            delta=1e-5,
            accountant=AccountantKind.RDP,
            clipping=ClippingMode.TRAINED,
            head_clip_norm=head_clip_norm,
            target_epsilon=3.0,
        ),
        chunk_bytes=1 << 20,
        base_model_fingerprint="f" * 64,
    )
    return Enrollment(protocol_version=1, silo_id="silo-a", plan=plan)


@pytest.mark.parametrize(
    ("pooling", "head_clip", "schedule"),
    [(HeadPooling.MEAN, 0.5, LrSchedule.COSINE), (HeadPooling.CLS, None, LrSchedule.CONSTANT)],
)
def test_plan_round_trips(pooling: HeadPooling, head_clip: float | None, schedule: LrSchedule) -> None:
    enrollment = _enrollment(pooling, head_clip, schedule)
    assert enrollment_from_proto(enrollment_to_proto(enrollment)) == enrollment


def test_a_plan_of_an_unknown_policy_is_refused_with_the_choices() -> None:
    message = enrollment_to_proto(_enrollment(HeadPooling.CLS, None))
    message.plan.federation.policy = "asloraa"
    with pytest.raises(WireError, match=f"unknown policy 'asloraa'; choose from {', '.join(POLICY_NAMES)}"):
        enrollment_from_proto(message)


def test_a_plan_without_pooling_means_the_checkpoint_head() -> None:
    """An older coordinator sends no pooling: the silo builds the [CLS] head, as that coordinator does."""
    message = enrollment_to_proto(_enrollment(HeadPooling.MEAN, None))
    message.plan.lora.ClearField("head_pooling")
    assert enrollment_from_proto(message).plan.lora.head_pooling is HeadPooling.CLS


def test_a_plan_without_a_curvature_source_means_the_constant() -> None:
    """An older coordinator sends no curvature source: its score used the constant."""
    message = enrollment_to_proto(_enrollment(HeadPooling.MEAN, None))
    message.plan.federation.score.ClearField("curvature")
    assert enrollment_from_proto(message).plan.federation.score.curvature is CurvatureSource.CONSTANT


def test_a_plan_without_a_schedule_means_constant_rates() -> None:
    """An older coordinator sends no schedule and trains every round at the configured rates."""
    message = enrollment_to_proto(_enrollment(HeadPooling.MEAN, None, LrSchedule.COSINE))
    message.plan.training.ClearField("lr_schedule")
    assert enrollment_from_proto(message).plan.training.lr_schedule is LrSchedule.CONSTANT


def test_a_plan_that_omits_the_noise_mode_requests_no_test_mode() -> None:
    message = enrollment_to_proto(_enrollment(HeadPooling.CLS, None, LrSchedule.CONSTANT))
    message.plan.privacy.ClearField("test_mode_requested")
    assert not enrollment_from_proto(message).plan.privacy.test_mode


def test_a_test_mode_request_round_trips() -> None:
    enrollment = _enrollment(HeadPooling.CLS, None, LrSchedule.CONSTANT)
    privacy = dataclasses.replace(enrollment.plan.privacy, test_mode=True)
    requested = dataclasses.replace(enrollment, plan=dataclasses.replace(enrollment.plan, privacy=privacy))
    assert enrollment_from_proto(enrollment_to_proto(requested)).plan.privacy.test_mode


def test_a_fixed_sigma_round_trips() -> None:
    enrollment = _enrollment(HeadPooling.CLS, None)
    fixed = dataclasses.replace(enrollment.plan.privacy, target_epsilon=None, noise_multiplier=1.3)
    planned = dataclasses.replace(enrollment, plan=dataclasses.replace(enrollment.plan, privacy=fixed))
    assert enrollment_from_proto(enrollment_to_proto(planned)) == planned
