"""The silo agent's settings, validated once from its TOML config file into typed dataclasses."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from aslora_core.config import (
    DEFAULT_ACCOUNTANT,
    DEFAULT_TASK,
    AccountantKind,
    ComputeSettings,
    ConfigError,
    RecordFields,
    TaskName,
)
from aslora_core.policy_traits import UnknownPolicyError, policy_traits
from aslora_rpc.config_file import Table, read_endpoint, read_listener, read_optional_listener, read_tls
from aslora_rpc.endpoints import Endpoint
from aslora_rpc.secure_aggregation.errors import SecureAggregationError
from aslora_rpc.secure_aggregation.signatures import PinnedPeers
from aslora_rpc.settings_file import read_settings
from aslora_rpc.tls import TlsFiles

DEFAULT_HEALTH_LISTEN = "0.0.0.0:7444"
SILO_COMPUTE_DEFAULTS = ComputeSettings(device="cpu", physical_batch_size=64, max_length=128)
"""[training] keys a silo's config leaves out: its device, chunk size and truncation are its own."""
DEFAULT_MAX_DELTA = 1e-5
DEFAULT_MIN_EVALUATION_NOISE_MULTIPLIER = 10.0
"""The least noise a silo releases its evaluation sums with unless its config says otherwise."""
DEFAULT_RANK_TIMEOUT_SECONDS = 600.0
"""How long a training rank may keep the others waiting in a collective (or for its reply) before the
round fails at the silo: a step's compute on an uneven share, with room to spare."""
EXAMPLE_MAX_EPSILON = 8.0
"""Named in the error for a config without a budget: a common choice for sample-level DP fine-tuning."""


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


@dataclass(frozen=True)
class ConnectionSettings:
    """Where the coordinator is and how hard to try reaching it."""

    coordinator: Endpoint
    tls: TlsFiles | None = None
    tls_server_name: str | None = None
    initial_backoff_seconds: float = 0.5
    max_backoff_seconds: float = 30.0
    give_up_after_seconds: float | None = None
    """Stop retrying after this long without reaching the coordinator (None: never give up)."""
    wait_seconds: float = 30.0
    """How long one WaitForTask call may be held open."""
    heartbeat_seconds: float = 15.0

    def __post_init__(self) -> None:
        _require(
            0 < self.initial_backoff_seconds <= self.max_backoff_seconds, "need 0 < initial <= max backoff"
        )
        _require(
            self.give_up_after_seconds is None or self.give_up_after_seconds > 0, "give_up_after must be > 0"
        )
        _require(
            self.wait_seconds > 0 and self.heartbeat_seconds > 0, "wait and heartbeat periods must be > 0"
        )


@dataclass(frozen=True)
class LocalData:
    """The silo's private training data (a file, or an image folder) and where its fields are."""

    train_path: Path
    fields: RecordFields = field(default_factory=RecordFields)
    eval_path: Path | None = None
    """The silo's evaluation records, never trained on (or a held-out fraction of `train_path`)."""
    eval_fraction: float = 0.0
    """The share of `train_path`'s records held out for evaluation, chosen per record by a keyed hash."""
    size_granularity: int = 1
    """Train on (and disclose the count of) a fixed subset whose size is a multiple of this: the
    coordinator then learns the dataset size only to this precision (1: every record, the exact size)."""

    def __post_init__(self) -> None:
        _require(self.size_granularity >= 1, "[privacy] dataset_size_granularity must be at least 1")
        _require(0.0 <= self.eval_fraction < 1.0, "[data] eval_fraction must be in [0, 1)")
        _require(
            self.eval_path is None or self.eval_fraction == 0.0,
            "[data] names an eval_path and an eval_fraction: choose one",
        )

    @property
    def has_evaluation_split(self) -> bool:
        """Whether the silo has records to evaluate on."""
        return self.eval_path is not None or self.eval_fraction > 0.0


@dataclass(frozen=True)
class SiloPrivacy:
    """What this silo's guarantee rests on, decided by its own config: a run plan can only ask for more."""

    max_epsilon: float
    """This silo's lifetime budget: composed over every run in its ledger (at `max_delta`); a run whose
    forecast, or a task whose cost, would take it past this is declined."""
    max_run_epsilon: float | None = None
    """The most one run may cost this silo (None: only the lifetime budget limits a run)."""
    max_delta: float = DEFAULT_MAX_DELTA
    """The delta this silo accounts at; a plan with a larger delta is refused."""
    accountant: AccountantKind = DEFAULT_ACCOUNTANT
    """How this silo composes its ledger's events; a plan naming another accountant is refused."""
    allow_non_private: bool = False
    """Whether a task without noise (sigma 0, no guarantee at all) may be trained."""
    test_mode: bool = False
    """Seeded noise and sampling when a plan requests it: no privacy guarantee, for tests only."""
    release_evaluation: bool = True
    """Whether this silo releases noised evaluation sums when a plan asks (False: it declines them)."""
    min_evaluation_noise_multiplier: float = DEFAULT_MIN_EVALUATION_NOISE_MULTIPLIER
    """The least noise multiplier of an evaluation release: a plan asking for less gets this one."""

    def __post_init__(self) -> None:
        _require(
            self.max_epsilon > 0 and math.isfinite(self.max_epsilon), "[privacy] max_epsilon must be positive"
        )
        _require(0 < self.max_delta < 1, "[privacy] max_delta must be in (0, 1)")
        _require(
            self.max_run_epsilon is None or 0 < self.max_run_epsilon <= self.max_epsilon,
            "[privacy] max_run_epsilon must be positive and at most max_epsilon",
        )
        _require(
            math.isfinite(self.min_evaluation_noise_multiplier) and self.min_evaluation_noise_multiplier >= 0,
            "[privacy] min_evaluation_noise_multiplier must be finite and non-negative",
        )


@dataclass(frozen=True)
class AcceptanceRules:
    """Which runs this silo takes part in, besides its privacy settings: a run plan for another base model
    (its fingerprint) or another task than the silo's own is always declined."""

    policies: tuple[str, ...] | None = None
    """The selection policies this silo trains with (None: any)."""
    allow_partial_runs: bool = False
    """Take part in a run whose whole cost the budget cannot pay, as long as it pays one round (the silo
    then declines the task that would pass its budget, and its partners go on without it)."""

    def __post_init__(self) -> None:
        for name in self.policies or ():
            try:
                policy_traits(name)
            except UnknownPolicyError as error:
                raise ConfigError(f"[acceptance] policies: {error}") from error


@dataclass(frozen=True)
class RankSettings:
    """How many training ranks the silo runs on its node (docs/operations.md, "A silo on several
    devices"), and how long one rank may keep the others waiting before the round fails."""

    devices: int = 1
    """Training ranks: GPUs when the device is `cuda`, gloo processes on the CPU (at most its cores)."""
    timeout_seconds: float = DEFAULT_RANK_TIMEOUT_SECONDS

    def __post_init__(self) -> None:
        _require(self.devices >= 1, "[training] devices must be at least 1")
        _require(
            math.isfinite(self.timeout_seconds) and self.timeout_seconds > 0,
            "[training] rank_timeout_seconds must be positive",
        )


@dataclass(frozen=True)
class SiloConfig:
    """Everything `aslora silo run` needs."""

    name: str
    model_path: Path
    task: TaskName
    """The one task this silo trains; a run plan for another task is refused."""
    data: LocalData
    compute: ComputeSettings
    privacy: SiloPrivacy
    acceptance: AcceptanceRules
    connection: ConnectionSettings
    health: Endpoint
    metrics: Endpoint | None
    ranks: RankSettings = RankSettings()
    peers: PinnedPeers = field(default_factory=PinnedPeers)
    """[secure_aggregation] peers: the silos whose round keys this silo accepts (name -> certificate
    fingerprint), obtained from them out of band; empty: it takes part in no secure-aggregation round."""

    def __post_init__(self) -> None:
        _require(bool(self.name), "[silo] name must not be empty")

    @property
    def answers_evaluation(self) -> bool:
        """Whether this silo releases evaluations in a run that asks for them (its config and data)."""
        return self.privacy.release_evaluation and self.data.has_evaluation_split


def load_silo_config(path: Path, task: TaskName | None = None) -> SiloConfig:
    """Parse and validate the silo's config file (`task`, when given, overrides its `task` key);
    ConfigError names the offending key."""
    top = Table.load(path)
    silo, data, training, privacy = (
        top.table("silo"),
        top.table("data"),
        top.table("training"),
        top.table("privacy"),
    )
    coordinator, connection = top.table("coordinator"), top.table("connection")
    acceptance, secure = top.table("acceptance"), top.table("secure_aggregation")
    defaults = ConnectionSettings(coordinator=Endpoint("localhost", 0))
    configured_task = top.parse("task", TaskName, DEFAULT_TASK.value)
    config = SiloConfig(
        name=silo.string("name"),
        model_path=top.path("model_path"),
        task=task or configured_task,
        data=LocalData(
            train_path=data.path("train_path"),
            fields=read_settings(data, RecordFields),
            eval_path=data.optional_path("eval_path"),
            eval_fraction=data.number("eval_fraction", LocalData.eval_fraction),
            size_granularity=privacy.integer("dataset_size_granularity", LocalData.size_granularity),
        ),
        compute=read_settings(training, ComputeSettings, defaults=SILO_COMPUTE_DEFAULTS),
        ranks=RankSettings(
            devices=training.integer("devices", RankSettings.devices),
            timeout_seconds=training.number("rank_timeout_seconds", RankSettings.timeout_seconds),
        ),
        privacy=_privacy(privacy),
        acceptance=AcceptanceRules(
            policies=acceptance.strings("policies") if acceptance.has("policies") else None,
            allow_partial_runs=acceptance.boolean("allow_partial_runs", default=False),
        ),
        connection=ConnectionSettings(
            coordinator=read_endpoint(coordinator, "address"),
            tls=read_tls(top),
            tls_server_name=coordinator.optional_string("tls_server_name"),
            initial_backoff_seconds=connection.number(
                "initial_backoff_seconds", defaults.initial_backoff_seconds
            ),
            max_backoff_seconds=connection.number("max_backoff_seconds", defaults.max_backoff_seconds),
            give_up_after_seconds=connection.optional_number("give_up_after_seconds"),
            wait_seconds=connection.number("wait_seconds", defaults.wait_seconds),
            heartbeat_seconds=connection.number("heartbeat_seconds", defaults.heartbeat_seconds),
        ),
        health=read_listener(top, "health", DEFAULT_HEALTH_LISTEN),
        metrics=read_optional_listener(top, "metrics"),
        peers=_pinned_peers(secure.table("peers")),
    )
    for table in (silo, data, training, privacy, acceptance, secure, coordinator, connection, top):
        table.finish()
    return config


def _pinned_peers(table: Table) -> PinnedPeers:
    """[secure_aggregation.peers]: one `name = "<sha256 fingerprint>"` line per peer silo."""
    fingerprints = {name: table.string(name) for name in table.names()}
    try:
        return PinnedPeers(fingerprints)
    except SecureAggregationError as error:
        raise ConfigError(
            f"[secure_aggregation.peers] {error} (aslora certs fingerprint --cert PEER.crt prints it)"
        ) from None


def _privacy(table: Table) -> SiloPrivacy:
    if not table.has("max_epsilon"):
        raise ConfigError(
            "[privacy] max_epsilon is required: this silo's own epsilon budget, which no coordinator can "
            f"raise (for example max_epsilon = {EXAMPLE_MAX_EPSILON:g})"
        )
    return SiloPrivacy(
        max_epsilon=table.number("max_epsilon"),
        max_run_epsilon=table.optional_number("max_run_epsilon"),
        max_delta=table.number("max_delta", DEFAULT_MAX_DELTA),
        accountant=table.parse("accountant", AccountantKind, DEFAULT_ACCOUNTANT.value),
        allow_non_private=table.boolean("allow_non_private", default=False),
        test_mode=table.boolean("test_mode", default=False),
        release_evaluation=table.boolean("release_evaluation", default=True),
        min_evaluation_noise_multiplier=table.number(
            "min_evaluation_noise_multiplier", DEFAULT_MIN_EVALUATION_NOISE_MULTIPLIER
        ),
    )
