"""What coordinator and silo tell each other, as plain dataclasses (their protobuf forms are in wire.py)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from aslora_core.config import FederationSettings, LoraSettings, PrivacySettings, TaskName, TrainingSettings
from aslora_core.factor_choice import Factor, FactorChoice
from aslora_core.federated_evaluation import EvaluationSums
from aslora_rpc.transfer import PayloadInfo


class RunState(StrEnum):
    """The life of a run: queued, waiting, running (or paused), then one of the four ends."""

    QUEUED = "queued"
    WAITING_FOR_SILOS = "waiting_for_silos"
    RUNNING = "running"
    PAUSED = "paused"
    FINISHED = "finished"
    STOPPED = "stopped"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def ended(self) -> bool:
        """Whether no further round will run."""
        return self in (RunState.FINISHED, RunState.STOPPED, RunState.FAILED, RunState.CANCELLED)


@dataclass(frozen=True)
class Registration:
    """A silo asking to join the run whose plan it checked: its protocol version, name, base-model
    fingerprint and dataset size."""

    protocol_version: int
    silo_name: str
    base_model_fingerprint: str
    dataset_size: int
    run_id: str


@dataclass(frozen=True)
class RunPlan:
    """The run as every silo knows it, fixed from registration to the end: what the run decides, in the
    core's own settings types (protobuf only at the wire); each silo's compute settings are its own."""

    run_id: str
    federation: FederationSettings
    """The policy, rounds, seed, score and aggregation of the run."""
    task: TaskName
    label_names: tuple[str, ...]
    """Class names in index order (empty for a task without classes)."""
    lora: LoraSettings
    training: TrainingSettings
    privacy: PrivacySettings
    """The run's DP-SGD settings; each silo's sigma comes with its tasks, and `test_mode` only requests
    seeded noise (a silo grants it when its own config declares a test mode)."""
    chunk_bytes: int
    base_model_fingerprint: str


@dataclass(frozen=True)
class RunDecline:
    """A silo that will not take part in a run whose plan it checked, and why (its own words)."""

    silo_name: str
    run_id: str
    reason: str
    epsilon_spent: float


@dataclass(frozen=True)
class Enrollment:
    """The coordinator's answer to a registration."""

    protocol_version: int
    silo_id: str
    plan: RunPlan


@dataclass(frozen=True)
class SecureAggregationPlan:
    """The public facts of a secure-aggregation round, as a task carries them (docs/secure-aggregation.md):
    the round's silos (sorted), the threshold t, the fixed-point fraction bits f, the round's total public
    weight, the receiving silo's own weight, and the (layer, factor) pairs whose statistics are encoded."""

    silos: tuple[str, ...]
    threshold: int
    fraction_bits: int
    round_weight: float
    weight: float
    statistics: tuple[tuple[str, Factor], ...] = ()


@dataclass(frozen=True)
class Task:
    """One silo's work in one round."""

    task_id: str
    round_index: int
    selection: dict[str, FactorChoice]
    noise_multiplier: float
    sample_rate: float
    local_steps: int
    adapter: PayloadInfo
    seconds_to_deadline: float
    evaluate: bool = False
    """An evaluation task: evaluate the adapter and release noised sums (or decline); nothing is trained.
    Its `noise_multiplier` is the one the plan asks of the release."""
    secure_aggregation: SecureAggregationPlan | None = None
    """Set when the round runs secure aggregation: the silo then uploads only its masked update."""


@dataclass(frozen=True)
class RunEnd:
    """The run is over: how, and why."""

    state: RunState
    reason: str


@dataclass(frozen=True)
class NoTaskYet:
    """Nothing to do now; ask again (the run state says why)."""

    state: RunState


TaskOutcome = Task | RunEnd | NoTaskYet


@dataclass(frozen=True)
class UploadAnnouncement:
    """The header of an update upload."""

    silo_id: str
    task_id: str
    update: PayloadInfo
    epsilon_spent: float
    masked: bool = False
    """The payload is a masked ring vector (secure aggregation), not an update file."""


@dataclass(frozen=True)
class EvaluationReply:
    """A silo's answer to an evaluation task: its noised sums and the noise multiplier it used, or (sums
    None) why it releases nothing."""

    silo_id: str
    task_id: str
    sums: EvaluationSums | None
    declined_reason: str
    noise_multiplier: float
    epsilon_spent: float
