"""The second rank of the trainer's cross-rank tests: a spawned process that trains what rank 0 trains."""

from __future__ import annotations

from multiprocessing.connection import Connection
from pathlib import Path

import torch

from aslora_core.adapters import read_adapter
from aslora_core.config import ClippingEngine
from aslora_core.factor_choice import FactorChoice
from aslora_core.factors import SiloUpdate
from aslora_core.training.rank_group import join_group, leave_group
from aslora_core.training.ranks import RankCollective
from tests.training.helpers import encoded_texts, make_trainer, tiny_lora_model, with_nonzero_b

RECORDS = 24
SIGMA = 1.0
GROUP_TIMEOUT_SECONDS = 60.0
ENGINES = (ClippingEngine.HOOKS, ClippingEngine.GHOST)


def train_round(
    model_dir: Path, engine: ClippingEngine, ranks: RankCollective | None
) -> tuple[SiloUpdate, float, int]:
    """One seeded round of the tiny model (B trained, both factors released): the update, epsilon and
    how many records the round's logical batches held."""
    model = tiny_lora_model(model_dir)
    state = with_nonzero_b(read_adapter(model))
    trainer = make_trainer(model, encoded_texts(model_dir, RECORDS), clipping_engine=engine, head_lr=0.1)
    trainer.ranks = ranks
    selection = dict.fromkeys(state.layer_names, FactorChoice.B)
    result = trainer.train_round(0, state, selection, noise_multiplier=SIGMA)
    return result.update, result.epsilon, result.examples_seen


def update_tensors(update: SiloUpdate) -> dict[str, torch.Tensor]:
    """The update's factors and head by name."""
    flat = {f"{layer}.{which}": t for layer, per in update.factors.items() for which, t in per.items()}
    flat.update({f"head.{name}": t for name, t in update.head.items()})
    return flat


def serve_peer(model_dir: Path, port: int, results: Connection) -> None:
    """Rank 1 of 2: train every engine's round as rank 0 does, send back its updates."""
    torch.set_num_threads(1)
    join_group(1, 2, port=port, timeout_seconds=GROUP_TIMEOUT_SECONDS)
    try:
        ranks = RankCollective(torch.device("cpu"))
        updates = [train_round(model_dir, engine, ranks)[0] for engine in ENGINES]
        # As arrays: a tensor sent through a pipe is shared memory that dies with this process.
        results.send([{name: t.numpy() for name, t in update_tensors(u).items()} for u in updates])
    finally:
        leave_group()
