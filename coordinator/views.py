"""What the admin service shows, as plain dataclasses (shared by the servicer and the operator's client)."""

from __future__ import annotations

from dataclasses import dataclass

from aslora_core.mechanism import Mechanism
from aslora_rpc.messages import RunState


@dataclass(frozen=True)
class SiloView:
    """One silo as the operator sees it."""

    silo_id: str
    dataset_size: int
    connected: bool
    seconds_since_seen: float
    rounds_participated: int
    epsilon_reported: float
    epsilon_recomputed: float
    noise_multiplier: float
    sample_rate: float
    declined_reason: str | None
    """Why the silo refused a task (it gets none until it registers again) or was evicted; None while it
    takes part."""
    evicted: bool = False
    """An operator evicted the silo from the run: it gets no further task in the run."""


@dataclass(frozen=True)
class StatusView:
    """The run at a glance."""

    state: RunState
    reason: str
    run_id: str
    policy: str
    task: str
    rounds_completed: int
    rounds_total: int
    open_round: int | None
    silos: list[SiloView]
    accuracy: float | None
    loss: float | None
    federated: FederatedStatusView | None = None
    """The silos' pooled evaluation of the latest adapter they evaluated."""
    waiting_for: str = ""
    """What holds the run up ("waiting: 1 of 2 eligible silos; hospital-b declined: ..."); empty when
    nothing does."""


@dataclass(frozen=True)
class FederatedStatusView:
    """The silos' pooled evaluation of one adapter, and how many silos it covers."""

    round_index: int
    accuracy: float | None
    loss: float | None
    silos_released: int
    silos_asked: int


@dataclass(frozen=True)
class PrivacyEventView:
    """A stretch of identical DP-SGD steps, or of evaluation releases."""

    noise_multiplier: float
    sample_rate: float
    steps: int
    mechanism: Mechanism = Mechanism.DP_SGD


@dataclass(frozen=True)
class LedgerEntryView:
    """One silo's privacy: reported, recomputed, and the steps behind the recomputation."""

    silo_id: str
    epsilon_reported: float
    epsilon_recomputed: float
    events: list[PrivacyEventView]


@dataclass(frozen=True)
class LedgerView:
    """The privacy ledger."""

    delta: float
    accountant: str
    budget: float | None
    entries: list[LedgerEntryView]


@dataclass(frozen=True)
class RunView:
    """One submitted run, as `aslora coordinator runs` lists it."""

    run_id: str
    state: RunState
    reason: str
    policy: str
    task: str
    rounds_completed: int
    rounds_total: int
    epsilon_spent: float
    """The largest epsilon the coordinator recomputes for any silo of the run."""
    submitted_at: float
    """Seconds since the Unix epoch (as are the start and end)."""
    started_at: float | None
    ended_at: float | None
    wall_seconds: float
    """Time the run was active, summed over coordinator restarts."""


@dataclass(frozen=True)
class FactorScoreView:
    """A factor's smoothed score after a round: its mean and standard error."""

    mean: float
    standard_error: float


@dataclass(frozen=True)
class LayerRoundView:
    """One layer in one round: the factor it trained and, under AS-LoRA, the scores after the round."""

    layer: str
    factor: str
    """A FactorChoice value: "A", "B" or "AB" (both)."""
    score_a: FactorScoreView | None
    score_b: FactorScoreView | None


@dataclass(frozen=True)
class RoundHistoryView:
    """One round the coordinator evaluated: its figures, each silo's epsilon and what each layer trained."""

    round_index: int
    accuracy: float
    loss: float
    epsilon: float
    silo_epsilons: dict[str, float]
    """Empty in results written before it was recorded."""
    layers: list[LayerRoundView]
    """In the model's order."""


@dataclass(frozen=True)
class RunHistoryView:
    """A run's figures round by round, as its results record them."""

    run_id: str
    initial_accuracy: float | None
    initial_loss: float | None
    rounds: list[RoundHistoryView]
    federated: list[FederatedStatusView]
    """The silos' pooled evaluations, one per adapter they evaluated."""
