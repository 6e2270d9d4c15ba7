"""The learning-quality study's plans (issue 25): its groups, the smoothed variants, the 30-round horizon
at the same epsilon, and BBC News with every silo's sampling rate below 0.5."""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from pathlib import Path

from aslora_core.config import DEFAULT_ACCOUNTANT, ClippingMode, GradientSmoothing, SimulationSettings
from aslora_core.simulation import load_records, partition_records
from aslora_core.tasks import make_task
from bench.learning_plans import (
    BBC_BATCH_SIZE,
    HORIZON_ROUNDS,
    LEARNING_POLICIES,
    LEARNING_SEEDS,
    SMOOTHED_POLICIES,
    learning_bbc,
    learning_horizon,
    learning_sst2,
)
from bench.plans import PLANS

MAX_SAMPLE_RATE = 0.5


def _plan_of(settings: SimulationSettings) -> tuple[object, ...]:
    """What must be equal across a study group: everything but the policy, its score, the clipping mode its
    estimator needs and the smoothing."""
    privacy = dataclasses.replace(settings.privacy, clipping=ClippingMode.TRAINED)
    training = dataclasses.replace(settings.training, smoothing=GradientSmoothing.NONE)
    return (settings.data, settings.partition, privacy, training, settings.lora, settings.federation.rounds)


def test_the_sst2_groups_hold_every_policy_and_the_smoothed_ones_under_one_plan() -> None:
    runs = learning_sst2()
    assert len({run.name for run in runs}) == len(runs)
    groups: dict[tuple[str, str], list[SimulationSettings]] = defaultdict(list)
    for run in runs:
        epsilon, *_, seed = run.name.split("-")
        groups[epsilon, seed].append(run.settings)
    assert set(groups) == {(e, f"seed{s}") for e in ("eps3", "eps1") for s in LEARNING_SEEDS}
    for members in groups.values():
        assert len({_plan_of(settings) for settings in members}) == 1
        assert {settings.privacy.accountant for settings in members} == {DEFAULT_ACCOUNTANT}
        plain = [s.federation.policy for s in members if s.training.smoothing is GradientSmoothing.NONE]
        smoothed = [
            s.federation.policy for s in members if s.training.smoothing is GradientSmoothing.LAPLACIAN
        ]
        assert (tuple(plain), tuple(smoothed)) == (LEARNING_POLICIES, SMOOTHED_POLICIES)


def test_the_horizon_runs_thirty_rounds_at_the_same_total_epsilon() -> None:
    short = {run.settings.privacy.target_epsilon for run in learning_sst2() if run.name.startswith("eps3")}
    for run in learning_horizon():
        assert run.settings.federation.rounds == HORIZON_ROUNDS
        assert {run.settings.privacy.target_epsilon} == short


def test_bbc_news_keeps_every_silo_below_half_its_records_per_step() -> None:
    runs = learning_bbc()
    assert {run.settings.federation.policy for run in runs} == set(LEARNING_POLICIES)
    for seed in LEARNING_SEEDS:
        settings = next(run.settings for run in runs if run.settings.federation.seed == seed)
        assert settings.data.train_path is None and settings.data.eval_path is None
        train, _ = load_records(make_task(settings.task), settings.data, seed)
        assert len(train.label_names) == 5
        for part in partition_records(train.labels, settings.partition, seed):
            assert BBC_BATCH_SIZE / len(part) < MAX_SAMPLE_RATE, (seed, len(part))


def test_the_new_plans_are_registered() -> None:
    for name, make in (("learning-sst2", learning_sst2), ("learning-bbc", learning_bbc)):
        assert [run.name for run in PLANS[name](Path())] == [run.name for run in make()]
    assert [run.name for run in PLANS["learning-horizon"](Path())] == [r.name for r in learning_horizon()]
