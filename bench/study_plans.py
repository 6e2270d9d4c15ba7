"""The learning studies' plans: every run's name and settings (SST-2, MiniLM, the DP regime)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from aslora_core.config import (
    AccountantKind,
    ClippingMode,
    ComputeSettings,
    CurvatureSource,
    DataSettings,
    FederationSettings,
    HeadPooling,
    LoraSettings,
    LrSchedule,
    OptimizerKind,
    PartitionSettings,
    PrivacySettings,
    ScoreSettings,
    SimulationSettings,
    TrainingSettings,
)
from aslora_core.policy_traits import POLICY_NAMES, policy_traits
from aslora_core.results import read_results

REPO = Path(__file__).resolve().parents[1]
SST2 = REPO.parent / "shared" / "data" / "sst2"


@dataclass(frozen=True)
class PlannedRun:
    """One run of a study: a file name and its settings."""

    name: str
    settings: SimulationSettings


# The DP regime for SST-2 with MiniLM (docs/results.md): a mean-pooling head without bias, clipped apart
# from the factors, chosen on a validation split carved from train.tsv, never on dev.tsv.
SST2_LORA = LoraSettings(head_pooling=HeadPooling.MEAN)
SST2_TRAINING = TrainingSettings(local_steps=3, batch_size=512, lr=4.0, head_lr=20.0)
SST2_COMPUTE = ComputeSettings(physical_batch_size=64, max_length=48)
SST2_FACTOR_CLIP = 0.1
SST2_HEAD_CLIP = 0.5
SST2_LABEL_TEXTS = ("i hated it", "i loved it")
"""The head's warm start (docs/tasks.md): of five pairs tried, the best zero-shot accuracy on the
validation split carved from train.tsv (0.719; "a negative review" / "a positive review" 0.714)."""
ABLATION_SEEDS = (0, 1)
"""Seeds of the two ablations (the head's warm start, the clipping mode)."""
WARM_HEAD_RUNS = (("ffa", "ffa", "norm"), ("aslora-hybrid", "aslora", "hybrid"), ("rolora", "rolora", "norm"))
"""(run label, policy, estimator) of the warm-start ablation: the best fixed rule first, then whether
selection gains once the head starts from the label texts."""


MEASURED_ACCOUNTANT = AccountantKind.RDP
"""The accountant the studies measured before issue 25 ran with (the default then), kept so that their
plans still describe their results; the learning-quality plans use the PRV default."""
ROUNDS = 6
SILOS = 5
DIRICHLET_ALPHA = 0.5
DELTA = 1e-5
SCORE_ESTIMATORS = ("norm", "gradient", "hybrid")
CENTRALIZED_ROUNDS = 30
"""The centralized non-private reference is a ceiling, not a DP comparison: it gets five times the steps."""
FIXED_RULES = tuple(name for name in POLICY_NAMES if not policy_traits(name).reads_statistics)
"""The policies that do not score: every run of the selection study's fixed rules."""


def sst2_run(
    policy: str,
    seed: int,
    *,
    epsilon: float | None,
    estimator: str = "norm",
    silos: int = SILOS,
    dirichlet_alpha: float | None = DIRICHLET_ALPHA,
    rounds: int = ROUNDS,
    head_label_texts: tuple[str, ...] = (),
    clipping: ClippingMode | None = None,
    curvature: CurvatureSource = CurvatureSource.CONSTANT,
    accountant: AccountantKind = MEASURED_ACCOUNTANT,
) -> SimulationSettings:
    """One SST-2 run of the regime: trained on train.tsv, evaluated on dev.tsv; epsilon None: non-private;
    `head_label_texts`: the head's warm start; `clipping`: instead of what the estimator needs;
    `curvature`: where the score's lambda comes from; `accountant`: what calibrates each silo's sigma."""
    joint = policy_traits(policy).needs_joint_clipping(ScoreSettings(estimator=estimator))
    if clipping is None:
        clipping = ClippingMode.JOINT if joint else ClippingMode.TRAINED
    return SimulationSettings(
        data=DataSettings(train_path=str(SST2 / "train.tsv"), eval_path=str(SST2 / "dev.tsv")),
        partition=PartitionSettings(silos=silos, dirichlet_alpha=dirichlet_alpha),
        lora=dataclasses.replace(SST2_LORA, head_label_texts=head_label_texts),
        privacy=PrivacySettings(
            target_epsilon=epsilon,
            noise_multiplier=None if epsilon is not None else 0.0,
            delta=DELTA,
            clip_norm=SST2_FACTOR_CLIP,
            head_clip_norm=SST2_HEAD_CLIP,
            test_mode=True,
            clipping=clipping,
            accountant=accountant,
        ),
        training=SST2_TRAINING,
        compute=SST2_COMPUTE,
        federation=FederationSettings(
            policy=policy,
            rounds=rounds,
            seed=seed,
            score=ScoreSettings(estimator=estimator, curvature=curvature),
        ),
    )


def sst2_first() -> list[PlannedRun]:
    """SST-2, MiniLM, 5 silos, Dirichlet 0.5, epsilon 3: four policies, 2 seeds (about 1 h on 2 cores)."""
    return [
        PlannedRun(name=f"{policy}-seed{seed}", settings=sst2_run(policy, seed, epsilon=3.0))
        for seed in (0, 1)
        for policy in ("aslora", "ffa", "rolora", "fedit")
    ]


def sst2_selection() -> list[PlannedRun]:
    """The selection study: epsilon 3 and 1, 3 seeds, AS-LoRA with each estimator and every fixed rule,
    a non-private FedIT ceiling and a centralized non-private run; seed-major so that a partial sitting
    covers every policy before the next seed."""
    runs = [
        PlannedRun(
            name="centralized-seed0",
            settings=sst2_run(
                "fedit", 0, epsilon=None, silos=1, dirichlet_alpha=None, rounds=CENTRALIZED_ROUNDS
            ),
        )
    ]
    for seed in (0, 1, 2):
        for epsilon in (3.0, 1.0):
            tag = f"eps{epsilon:g}"
            for estimator in SCORE_ESTIMATORS:
                runs.append(
                    PlannedRun(
                        name=f"{tag}-aslora-{estimator}-seed{seed}",
                        settings=sst2_run("aslora", seed, epsilon=epsilon, estimator=estimator),
                    )
                )
            for policy in FIXED_RULES:
                runs.append(
                    PlannedRun(
                        name=f"{tag}-{policy}-seed{seed}", settings=sst2_run(policy, seed, epsilon=epsilon)
                    )
                )
        runs.append(
            PlannedRun(name=f"nonprivate-fedit-seed{seed}", settings=sst2_run("fedit", seed, epsilon=None))
        )
    runs += [
        PlannedRun(
            name=f"eps3-{label}-warmhead-seed{seed}",
            settings=sst2_run(
                policy, seed, epsilon=3.0, estimator=estimator, head_label_texts=SST2_LABEL_TEXTS
            ),
        )
        for label, policy, estimator in WARM_HEAD_RUNS
        for seed in ABLATION_SEEDS
    ]
    # The clipping-mode ablation: `norm` keeps every layer on B (so it is FFA-LoRA) but clips both factors
    # jointly as `gradient` and `hybrid` must; it separates the cost of joint clipping from selection.
    runs += [
        PlannedRun(
            name=f"eps3-aslora-norm-jointclip-seed{seed}",
            settings=sst2_run("aslora", seed, epsilon=3.0, estimator="norm", clipping=ClippingMode.JOINT),
        )
        for seed in ABLATION_SEEDS
    ]
    return runs


@dataclass(frozen=True)
class CeilingPoint:
    """Settings of the centralized non-private run: the factors' and the head's learning rates, their
    schedule, the optimizer, whether per-sample gradients are clipped as in the DP regime, and rounds."""

    lr: float
    head_lr: float
    schedule: LrSchedule = LrSchedule.CONSTANT
    optimizer: OptimizerKind = OptimizerKind.SGD
    clipped: bool = True
    rounds: int = CENTRALIZED_ROUNDS

    @property
    def tag(self) -> str:
        """The point in a run name, e.g. lr2-head10-cosine or lr0.001-head0.01-adam-unclipped."""
        suffix = "" if self.schedule is LrSchedule.CONSTANT else f"-{self.schedule.value}"
        suffix += "" if self.optimizer is OptimizerKind.SGD else f"-{self.optimizer.value}"
        suffix += "" if self.clipped else "-unclipped"
        suffix += "" if self.rounds == CENTRALIZED_ROUNDS else f"-{self.rounds}rounds"
        return f"lr{self.lr:g}-head{self.head_lr:g}{suffix}"


CEILING_GRID = (
    CeilingPoint(1.0, 5.0),
    CeilingPoint(2.0, 10.0),
    CeilingPoint(2.0, 10.0, LrSchedule.COSINE),
    CeilingPoint(4.0, 20.0, LrSchedule.COSINE),
    CeilingPoint(1e-3, 1e-2, optimizer=OptimizerKind.ADAM, clipped=False),
    CeilingPoint(0.1, 0.5, clipped=False),
    CeilingPoint(0.3, 1.5, clipped=False),
    CeilingPoint(1.0, 5.0, clipped=False),
    CeilingPoint(1e-3, 1e-2, optimizer=OptimizerKind.ADAM, clipped=False, rounds=2 * CENTRALIZED_ROUNDS),
)
"""Tried on the validation split: the DP regime's 4 and 20 overshoot at a constant rate once no noise
slows them (docs/results.md); at constant rates every run's loss turned up again, so the cosine schedule
joined the grid; under it accuracy still peaked by round 6 and fell back, so the last point drops the
per-sample clipping (whose fixed point need not be the loss's minimum) for Adam at common LoRA rates; the
unclipped SGD points (the clipped rates scaled down tenfold and around, as unclipped mean gradients are
larger) separate the optimizer from the clipping; Adam's point was still rising after 30 rounds, so it
ran for twice as many too."""
UNCLIPPED_NORM = 1e6
"""A clipping norm no per-sample gradient reaches here: clipping off, the DP machinery otherwise intact."""
VALIDATION_RECORDS = 872
"""Validation examples evaluated each round: as many as dev.tsv holds."""


def on_validation_split(settings: SimulationSettings) -> SimulationSettings:
    """The run trained on train.tsv less a validation split carved from it, and evaluated on that split
    instead of dev.tsv."""
    data = DataSettings(train_path=settings.data.train_path, max_eval_examples=VALIDATION_RECORDS)
    return dataclasses.replace(settings, data=data)


def ceiling_run(point: CeilingPoint, *, validation: bool) -> SimulationSettings:
    """The centralized non-private run at these learning rates; `validation`: on the validation split."""
    settings = sst2_run("fedit", 0, epsilon=None, silos=1, dirichlet_alpha=None, rounds=point.rounds)
    training = dataclasses.replace(
        settings.training,
        lr=point.lr,
        head_lr=point.head_lr,
        lr_schedule=point.schedule,
        optimizer=point.optimizer,
    )
    privacy = (
        settings.privacy
        if point.clipped
        else dataclasses.replace(settings.privacy, clip_norm=UNCLIPPED_NORM, head_clip_norm=UNCLIPPED_NORM)
    )
    settings = dataclasses.replace(settings, training=training, privacy=privacy)
    return on_validation_split(settings) if validation else settings


def sst2_ceiling(folder: Path) -> list[PlannedRun]:
    """The centralized non-private ceiling tuned on the validation split (one run per CEILING_GRID point);
    once all are in `folder`, the point with the best final validation accuracy runs on dev.tsv."""
    grid = {f"validation-{point.tag}-seed0": point for point in CEILING_GRID}
    runs = [PlannedRun(name, ceiling_run(point, validation=True)) for name, point in grid.items()]
    finished = {name: folder / f"{name}.json" for name in grid}
    if all(path.exists() for path in finished.values()):
        chosen = grid[max(grid, key=lambda name: read_results(finished[name]).final_accuracy or 0.0)]
        runs.append(PlannedRun(f"dev-{chosen.tag}-seed0", ceiling_run(chosen, validation=False)))
    return runs


def sst2_estimator_choice() -> list[PlannedRun]:
    """AS-LoRA with each estimator at epsilon 3 on the validation split (seed-major): the best final
    validation accuracy names the estimator that the selection study holds against the fixed rules."""
    return [
        PlannedRun(
            name=f"validation-eps3-aslora-{estimator}-seed{seed}",
            settings=on_validation_split(sst2_run("aslora", seed, epsilon=3.0, estimator=estimator)),
        )
        for seed in ABLATION_SEEDS
        for estimator in SCORE_ESTIMATORS
    ]


SKEWED_ALPHA = 0.1
"""The more skewed label split of the learning-quality table: most silos hold mostly one class."""
HEAD_TO_HEAD_RUNS = (
    ("ffa", "ffa", "norm"),
    ("rolora", "rolora", "norm"),
    ("fedit", "fedit", "norm"),
    ("svd", "svd", "norm"),
    ("aslora-hybrid", "aslora", "hybrid"),
    ("aslora-gradient", "aslora", "gradient"),
)
"""(run label, policy, estimator) of the shorter comparisons: the fixed rules and AS-LoRA with its two
best estimators on the validation split that differ from a fixed rule (`norm`, a hair behind `hybrid`,
keeps every layer on B here and is FFA-LoRA bit for bit)."""
GPU_EPSILONS = (3.0, 1.0)


def sst2_skewed() -> list[PlannedRun]:
    """The selection study's epsilon-3 comparison under Dirichlet 0.1, 3 seeds, seed-major."""
    return [
        PlannedRun(
            name=f"eps3-{label}-seed{seed}",
            settings=sst2_run(policy, seed, epsilon=3.0, estimator=estimator, dirichlet_alpha=SKEWED_ALPHA),
        )
        for seed in (0, 1, 2)
        for label, policy, estimator in HEAD_TO_HEAD_RUNS
    ]


def sst2_gpu_subset() -> list[PlannedRun]:
    """The selection study's subset for one GPU machine: epsilon 3 and 1, 3 seeds, the head-to-head runs,
    named as in sst2-selection (`--device cuda --jobs 12`, `--model` and `--sst2` from the carry)."""
    return [
        PlannedRun(
            name=f"eps{epsilon:g}-{label}-seed{seed}",
            settings=sst2_run(policy, seed, epsilon=epsilon, estimator=estimator),
        )
        for seed in (0, 1, 2)
        for epsilon in GPU_EPSILONS
        for label, policy, estimator in HEAD_TO_HEAD_RUNS
    ]


def _moved(path: str | None, folder: Path) -> str | None:
    return None if path is None else str(folder / Path(path).name)


def relocated(settings: SimulationSettings, *, model: Path | None, sst2: Path | None) -> SimulationSettings:
    """The run with its model (None: unchanged) and its SST-2 folder of train.tsv and dev.tsv (None:
    unchanged) read from elsewhere, as on a device machine without ../shared."""
    if model is not None:
        settings = dataclasses.replace(settings, model_path=str(model))
    if sst2 is not None:
        data = settings.data
        data = dataclasses.replace(
            data,
            train_path=_moved(data.train_path, sst2),
            eval_path=_moved(data.eval_path, sst2),
        )
        settings = dataclasses.replace(settings, data=data)
    return settings


CURVATURE_ESTIMATOR = "hybrid"
"""The estimator the selection study holds against the fixed rules (chosen on the validation split)."""


def sst2_curvature() -> list[PlannedRun]:
    """AS-LoRA at epsilon 3, seed 0, with the score's curvature estimated by the silos' secants and with
    the constant: one pair, the same seed (so the same split, initial adapter and noise draws)."""
    return [
        PlannedRun(
            name=f"eps3-aslora-{CURVATURE_ESTIMATOR}-{source.value}-seed0",
            settings=sst2_run("aslora", 0, epsilon=3.0, estimator=CURVATURE_ESTIMATOR, curvature=source),
        )
        for source in (CurvatureSource.ESTIMATED, CurvatureSource.CONSTANT)
    ]
