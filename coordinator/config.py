"""The coordinator's settings, validated once from its TOML config file into typed dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aslora_core.config import (
    DEFAULT_TASK,
    ConfigError,
    FederationSettings,
    LoraSettings,
    PrivacySettings,
    RecordFields,
    TaskName,
    TrainingSettings,
    check_score_clipping,
)
from aslora_rpc.endpoints import Endpoint
from aslora_rpc.options import DEFAULT_CHUNK_BYTES, MAX_CHUNK_BYTES
from aslora_rpc.tls import TlsFiles

GIB = 1 << 30
DEFAULT_MAX_PAYLOAD_BYTES = 4 * GIB
DEFAULT_ROUND_DEADLINE_SECONDS = 1800.0
DEFAULT_HEARTBEAT_TIMEOUT_SECONDS = 120.0
DEFAULT_MAX_ROUND_ATTEMPTS = 3
DEFAULT_MAX_WORKERS = 64
DEFAULT_MAX_WAIT_SECONDS = 30.0
DEFAULT_EVAL_MAX_LENGTH = 128
DEFAULT_MAX_UPDATE_NORM_RATIO = 10.0


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


@dataclass(frozen=True)
class RoundSettings:
    """How rounds are staffed and timed."""

    min_silos: int = 1
    """A round starts with at least this many connected silos, and aggregates only with this many updates."""
    silo_fraction: float = 1.0
    """Fraction of the connected silos given a task each round (at least min_silos)."""
    round_deadline_seconds: float = DEFAULT_ROUND_DEADLINE_SECONDS
    heartbeat_timeout_seconds: float = DEFAULT_HEARTBEAT_TIMEOUT_SECONDS
    """A silo not heard from for this long gets no new task until it calls again; a restarted coordinator
    waits up to this long for the silos of its checkpoint before its first attempt."""
    max_round_attempts: int = DEFAULT_MAX_ROUND_ATTEMPTS
    """A round with fewer than min_silos updates is redone; after this many attempts the run fails."""
    registration_timeout_seconds: float | None = None
    """The run fails when min_silos have not registered by then (None: wait for ever)."""

    def __post_init__(self) -> None:
        _require(self.min_silos >= 1, "min_silos must be at least 1")
        _require(0.0 < self.silo_fraction <= 1.0, "silo_fraction must be in (0, 1]")
        _require(self.round_deadline_seconds > 0, "round_deadline_seconds must be positive")
        _require(self.heartbeat_timeout_seconds > 0, "heartbeat_timeout_seconds must be positive")
        _require(self.max_round_attempts >= 1, "max_round_attempts must be at least 1")
        _require(
            self.registration_timeout_seconds is None or self.registration_timeout_seconds > 0,
            "registration_timeout_seconds must be positive",
        )


@dataclass(frozen=True)
class TransportSettings:
    """Chunked payloads."""

    chunk_bytes: int = DEFAULT_CHUNK_BYTES
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    """Uploads announced larger than this are refused before any byte is received."""

    def __post_init__(self) -> None:
        _require(0 < self.chunk_bytes <= MAX_CHUNK_BYTES, f"chunk_bytes must be in (0, {MAX_CHUNK_BYTES}]")
        _require(self.max_payload_bytes > 0, "max_payload_bytes must be positive")


@dataclass(frozen=True)
class EvaluationSettings:
    """A public evaluation set the coordinator may see, measured after every round, and where the results
    file goes."""

    data_path: Path | None = None
    """None: the coordinator evaluates nothing itself (the silos may: [federation] silo_evaluation)."""
    fields: RecordFields = field(default_factory=RecordFields)
    max_length: int = DEFAULT_EVAL_MAX_LENGTH
    device: str = "cpu"
    results_path: Path | None = None
    """Where the results JSON (the schema of `aslora simulate`) is written after every round."""

    def __post_init__(self) -> None:
        _require(self.max_length >= 1, "evaluation max_length must be positive")


@dataclass(frozen=True)
class ServerSettings:
    """Listeners and serving limits."""

    listen: Endpoint
    health: Endpoint
    metrics: Endpoint | None = None
    """Where Prometheus metrics are served over plain HTTP (None: not served); see coordinator/metrics.py."""
    tls: TlsFiles | None = None
    max_workers: int = DEFAULT_MAX_WORKERS
    max_wait_seconds: float = DEFAULT_MAX_WAIT_SECONDS
    """Longest a WaitForTask call is held open."""
    linger_seconds: float | None = None
    """After the run ends, keep serving (status, export) this long, then exit; None: until stopped."""
    port_file: Path | None = None
    """Write the bound ports here as JSON once listening (for launchers that bind port 0)."""

    def __post_init__(self) -> None:
        _require(self.max_workers >= 2, "max_workers must be at least 2")
        _require(self.max_wait_seconds > 0, "max_wait_seconds must be positive")
        _require(self.linger_seconds is None or self.linger_seconds >= 0, "linger_seconds must be >= 0")


@dataclass(frozen=True)
class SecuritySettings:
    """Who may join, which certificates are revoked, and how large an update may be (DESIGN 5)."""

    allowed_silos: tuple[str, ...] | None = None
    """Silo names (certificate CNs) admitted; None admits every silo certificate of the CA."""
    revocation_list: Path | None = None
    """The deny list `aslora certs revoke` writes (revoked.json); re-read whenever it changes."""
    max_update_norm_ratio: float | None = None
    """An update whose change ||update - global|| exceeds this multiple of ||global|| is rejected (norms
    over the tensors the update carries; a large value effectively disables the bound). None: the default
    bound, DEFAULT_MAX_UPDATE_NORM_RATIO, for the runs whose updates the coordinator sees; set, it is
    refused with a secure-aggregation run, whose updates it never sees."""

    def __post_init__(self) -> None:
        _require(
            self.allowed_silos is None or len(self.allowed_silos) > 0,
            "allowed_silos must name at least one silo (leave it out to admit every silo certificate)",
        )
        _require(
            self.max_update_norm_ratio is None or self.max_update_norm_ratio > 0,
            "max_update_norm_ratio must be positive",
        )

    @property
    def update_norm_bound(self) -> float:
        """The norm ratio a plain run's updates are checked against."""
        return (
            DEFAULT_MAX_UPDATE_NORM_RATIO
            if self.max_update_norm_ratio is None
            else self.max_update_norm_ratio
        )

    def check_run(self, secure_aggregation: bool) -> None:
        """ConfigError for a secure-aggregation run under an explicit per-update norm bound: the coordinator
        never sees an update to check."""
        if secure_aggregation and self.max_update_norm_ratio is not None:
            raise ConfigError(
                f"[security] max_update_norm_ratio = {self.max_update_norm_ratio:g} bounds each update, "
                "which a run with [federation] secure_aggregation never shows the coordinator: leave the "
                "bound out of the coordinator's config, or secure aggregation out of the run"
            )


@dataclass(frozen=True)
class RunConfig:
    """What one run decides: its model, task, federation, staffing, LoRA, privacy, training, evaluation."""

    model_path: Path
    label_names: tuple[str, ...]
    federation: FederationSettings
    rounds: RoundSettings
    lora: LoraSettings
    privacy: PrivacySettings
    privacy_budget: float | None
    """Per-silo epsilon the run never lets the recomputed ledger pass (default: the target epsilon)."""
    training: TrainingSettings
    evaluation: EvaluationSettings | None
    task: TaskName = DEFAULT_TASK

    def __post_init__(self) -> None:
        if self.task.has_classes:
            _require(len(self.label_names) >= 2, "labels must name at least two classes")
        else:
            _require(
                not self.label_names, f"the {self.task.value} task has no class labels: leave out labels"
            )
        _require(len(set(self.label_names)) == len(self.label_names), "labels must be distinct")
        _require(self.privacy_budget is None or self.privacy_budget > 0, "max_epsilon must be positive")
        check_score_clipping(self.federation, self.privacy)


@dataclass(frozen=True)
class ServiceConfig:
    """What the coordinator service keeps across runs: listeners, transport limits and admission."""

    server: ServerSettings
    transport: TransportSettings = TransportSettings()
    security: SecuritySettings = SecuritySettings()


@dataclass(frozen=True)
class CoordinatorConfig:
    """Everything `aslora coordinator serve` needs: the service, and the run its config file holds (the
    first run submitted), if any."""

    service: ServiceConfig
    run: RunConfig | None
    run_values: dict[str, Any] = field(default_factory=dict, compare=False)
    """The run's keys as read from the file (what the run queue keeps, and reads again on a restart)."""
    base_dir: Path | None = None
    """The config file's folder: relative paths in it, and in every submitted run, resolve against it."""
