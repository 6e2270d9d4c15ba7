"""Read `aslora coordinator serve --config FILE` into a CoordinatorConfig (see docs/operations.md)."""

from __future__ import annotations

from pathlib import Path

from aslora_coordinator.config import (
    DEFAULT_MAX_WORKERS,
    CoordinatorConfig,
    EvaluationSettings,
    RoundSettings,
    SecuritySettings,
    ServerSettings,
    TransportSettings,
)
from aslora_core.config import (
    DEFAULT_TASK,
    AccountantKind,
    ClippingMode,
    Combiner,
    ConfigError,
    FederationSettings,
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
from aslora_rpc.certificates import CA_CERT_FILE, REVOKED_FILE
from aslora_rpc.config_file import Table, read_endpoint, read_listener, read_optional_listener, read_tls
from aslora_rpc.options import DEFAULT_CHUNK_BYTES

DEFAULTS_ROUND = RoundSettings()
DEFAULT_LISTEN = "0.0.0.0:7443"
DEFAULT_HEALTH_LISTEN = "0.0.0.0:7444"


def load_coordinator_config(path: Path) -> CoordinatorConfig:
    """Parse and validate the coordinator's config file; ConfigError names the offending key."""
    top = Table.load(path)
    federation, rounds = _federation(top.table("federation"))
    privacy, budget = _privacy(top.table("privacy"))
    task = top.parse("task", TaskName, DEFAULT_TASK.value)
    config = CoordinatorConfig(
        model_path=top.path("model_path"),
        task=task,
        label_names=top.strings("labels") if task.has_classes or top.has("labels") else (),
        server=_server(top),
        federation=federation,
        rounds=rounds,
        lora=_lora(top.table("lora")),
        privacy=privacy,
        privacy_budget=budget,
        training=_training(top.table("training")),
        transport=_transport(top.table("transport")),
        evaluation=_evaluation(top.optional_table("evaluation")),
        security=_security(top.table("security")),
    )
    top.finish()
    texts = config.lora.head_label_texts
    if texts and len(texts) != len(config.label_names):
        raise ConfigError(f"[lora] head_label_texts: {len(texts)} texts for {len(config.label_names)} labels")
    return config


def _server(top: Table) -> ServerSettings:
    server = top.table("server")
    settings = ServerSettings(
        listen=read_endpoint(server, "listen", DEFAULT_LISTEN),
        max_workers=server.integer("max_workers", DEFAULT_MAX_WORKERS),
        max_wait_seconds=server.number("max_wait_seconds", ServerSettings.max_wait_seconds),
        linger_seconds=server.optional_number("linger_seconds"),
        port_file=server.optional_path("port_file"),
        health=read_listener(top, "health", DEFAULT_HEALTH_LISTEN),
        metrics=read_optional_listener(top, "metrics"),
        tls=read_tls(top),
    )
    server.finish()
    return settings


def _federation(table: Table) -> tuple[FederationSettings, RoundSettings]:
    """The core federation settings, and the round-staffing keys of the same table."""
    score = table.table("score")
    score_settings = ScoreSettings(
        estimator=score.string("estimator", ScoreSettings.estimator),
        ema=score.number("ema", ScoreSettings.ema),
        z=score.number("z", ScoreSettings.z),
        curvature=score.number("curvature", ScoreSettings.curvature),
        prior_gradient_scale=score.number("prior_gradient_scale", ScoreSettings.prior_gradient_scale),
    )
    score.finish()
    rounds = RoundSettings(
        min_silos=table.integer("min_silos", DEFAULTS_ROUND.min_silos),
        silo_fraction=table.number("silo_fraction", DEFAULTS_ROUND.silo_fraction),
        round_deadline_seconds=table.number("round_deadline_seconds", DEFAULTS_ROUND.round_deadline_seconds),
        heartbeat_timeout_seconds=table.number(
            "heartbeat_timeout_seconds", DEFAULTS_ROUND.heartbeat_timeout_seconds
        ),
        max_round_attempts=table.integer("max_round_attempts", DEFAULTS_ROUND.max_round_attempts),
        registration_timeout_seconds=table.optional_number("registration_timeout_seconds"),
    )
    settings = FederationSettings(
        policy=table.string("policy", FederationSettings.policy),
        rounds=table.integer("rounds", FederationSettings.rounds),
        seed=table.integer("seed", FederationSettings.seed),
        score=score_settings,
        combiner=table.parse("combiner", Combiner, FederationSettings.combiner.value),
        trim_fraction=table.number("trim_fraction", FederationSettings.trim_fraction),
        weighting=table.parse("weighting", Weighting, FederationSettings.weighting.value),
    )
    table.finish()
    return settings, rounds


def _lora(table: Table) -> LoraSettings:
    settings = LoraSettings(
        rank=table.integer("rank", LoraSettings.rank),
        alpha=table.integer("alpha", LoraSettings.alpha),
        target_modules=table.strings("target_modules", LoraSettings.target_modules),
        dropout=table.number("dropout", LoraSettings.dropout),
        head_pooling=table.parse("head_pooling", HeadPooling, LoraSettings.head_pooling.value),
        head_label_texts=table.strings("head_label_texts", LoraSettings.head_label_texts),
    )
    table.finish()
    return settings


def _privacy(table: Table) -> tuple[PrivacySettings, float | None]:
    settings = PrivacySettings(
        clip_norm=table.number("clip_norm", PrivacySettings.clip_norm),
        head_clip_norm=table.optional_number("head_clip_norm"),
        delta=table.number("delta", PrivacySettings.delta),
        noise_multiplier=table.optional_number("noise_multiplier"),
        target_epsilon=table.optional_number("target_epsilon"),
        accountant=table.parse("accountant", AccountantKind, AccountantKind.RDP.value),
        secure_noise=not table.boolean("test_mode", default=False),
        clipping=table.parse("clipping", ClippingMode, ClippingMode.TRAINED.value),
    )
    budget = table.optional_number("max_epsilon")
    table.finish()
    return settings, budget if budget is not None else settings.target_epsilon


def _training(table: Table) -> TrainingSettings:
    defaults = TrainingSettings()
    settings = TrainingSettings(
        local_steps=table.integer("local_steps", defaults.local_steps),
        batch_size=table.integer("batch_size", defaults.batch_size),
        lr=table.number("lr", defaults.lr),
        head_lr=table.optional_number("head_lr"),
        optimizer=table.parse("optimizer", OptimizerKind, defaults.optimizer.value),
        lr_schedule=table.parse("lr_schedule", LrSchedule, defaults.lr_schedule.value),
    )
    table.finish()
    return settings


def _transport(table: Table) -> TransportSettings:
    settings = TransportSettings(
        chunk_bytes=table.integer("chunk_bytes", DEFAULT_CHUNK_BYTES),
        max_payload_bytes=table.integer("max_payload_bytes", TransportSettings.max_payload_bytes),
    )
    table.finish()
    return settings


def _evaluation(table: Table | None) -> EvaluationSettings | None:
    if table is None:
        return None
    settings = EvaluationSettings(
        data_path=table.path("data_path"),
        text_column=table.string("text_column", EvaluationSettings.text_column),
        text_pair_column=table.optional_string("text_pair_column"),
        label_column=table.string("label_column", EvaluationSettings.label_column),
        prompt_field=table.string("prompt_field", EvaluationSettings.prompt_field),
        response_field=table.string("response_field", EvaluationSettings.response_field),
        max_length=table.integer("max_length", EvaluationSettings.max_length),
        device=table.string("device", EvaluationSettings.device),
        results_path=table.optional_path("results_path"),
    )
    table.finish()
    return settings


def _security(table: Table) -> SecuritySettings:
    allowed = table.strings("allowed_silos") if table.has("allowed_silos") else None
    settings = SecuritySettings(
        allowed_silos=allowed,
        revocation_list=_revocation_list(table),
        max_update_norm_ratio=table.number("max_update_norm_ratio", SecuritySettings.max_update_norm_ratio),
    )
    table.finish()
    return settings


def _revocation_list(table: Table) -> Path | None:
    """A configured deny list must exist: a missing one would silently revoke nothing."""
    path = table.optional_path("revocation_list")
    if path is not None and not path.is_file():
        raise ConfigError(
            f'[security] revocation_list = "{path}": no such file (`aslora certs init` writes an empty '
            f"{REVOKED_FILE} beside {CA_CERT_FILE}; leave the key out to revoke nothing)"
        )
    return path
