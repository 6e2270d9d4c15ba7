"""Resuming a run from a checkpoint: which configuration it belongs to, and how its state is put back.

A checkpoint resumes only the run it was taken of: `config_fingerprint` hashes everything that decides
the run's arithmetic (base model, labels, federation, LoRA, privacy and training settings, and who is
chosen: `min_silos`, `silo_fraction`). Timing keys (deadlines, heartbeats, attempts) may change across a
restart. A checkpoint whose fingerprint differs is refused, never mixed into another run.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict

from aslora_coordinator.config import RunConfig
from aslora_coordinator.orchestrator import Orchestrator
from aslora_coordinator.results_recorder import ResultsRecorder
from aslora_coordinator.state import CheckpointError, CoordinatorSnapshot
from aslora_core.results import RunResult
from aslora_core.rounds import RoundEngine


def config_fingerprint(config: RunConfig, base_model_fingerprint: str) -> str:
    """SHA-256 over the settings that define the run (not where files live, nor timing, server or TLS)."""
    defining = {
        "base_model": base_model_fingerprint,
        "task": config.task.value,
        "labels": list(config.label_names),
        "federation": asdict(config.federation),
        "min_silos": config.rounds.min_silos,
        "silo_fraction": config.rounds.silo_fraction,
        "lora": asdict(config.lora),
        "privacy": asdict(config.privacy),
        "privacy_budget": config.privacy_budget,
        "training": asdict(config.training),
    }
    canonical = json.dumps(defining, sort_keys=True, default=str).encode("utf-8")
    return hashlib.sha256(canonical).hexdigest()


def check_resumable(snapshot: CoordinatorSnapshot, fingerprint: str) -> None:
    """CheckpointError unless the checkpoint was taken of a run with this configuration."""
    if snapshot.config_fingerprint != fingerprint:
        raise CheckpointError(
            f"the checkpoint of run {snapshot.run_id} was taken with another run configuration "
            f"(fingerprint {snapshot.config_fingerprint[:12]}..., this config {fingerprint[:12]}...); "
            "restore that config, or start the new run with an empty --state-dir"
        )


def restore(
    snapshot: CoordinatorSnapshot,
    orchestrator: Orchestrator,
    engine: RoundEngine,
    recorder: ResultsRecorder,
) -> None:
    """Put the checkpointed round, adapter, policy, registry, ledger and results back in place (the round
    driver continues at attempt `snapshot.failed_attempts`)."""
    engine.state = snapshot.global_state
    engine.round_index = snapshot.rounds_completed
    engine.policy.load_state_dict(snapshot.policy_state)
    orchestrator.restore(snapshot)
    recorder.restore(RunResult.from_json(snapshot.results))
