"""Simulation settings for the tiny BERT of the tests: small LoRA, deterministic noise, short records."""

from __future__ import annotations

from pathlib import Path

from aslora_core.config import (
    ComputeSettings,
    DataSettings,
    FederationSettings,
    LoraSettings,
    PartitionSettings,
    PrivacySettings,
    SimulationSettings,
    TrainingSettings,
)

TINY_RANK = 4
TINY_ALPHA = 8
TINY_LR = 0.5
TINY_MAX_LENGTH = 16
TINY_EPSILON = 8.0


def tiny_simulation(
    model_dir: Path,
    data: DataSettings,
    *,
    silos: int,
    rounds: int,
    local_steps: int,
    batch_size: int,
    physical_batch_size: int,
    policy: str = "aslora",
    seed: int = 1,
) -> SimulationSettings:
    """A Dirichlet(1) federation of the tiny model at epsilon 8 with seeded (not secure) noise."""
    return SimulationSettings(
        model_path=str(model_dir),
        data=data,
        partition=PartitionSettings(silos=silos, dirichlet_alpha=1.0),
        lora=LoraSettings(rank=TINY_RANK, alpha=TINY_ALPHA),
        privacy=PrivacySettings(target_epsilon=TINY_EPSILON, test_mode=True),
        training=TrainingSettings(
            local_steps=local_steps,
            batch_size=batch_size,
            lr=TINY_LR,
        ),
        compute=ComputeSettings(physical_batch_size=physical_batch_size, max_length=TINY_MAX_LENGTH),
        federation=FederationSettings(policy=policy, rounds=rounds, seed=seed),
    )
