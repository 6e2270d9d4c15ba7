"""Exactness through the real pipeline: DP trainer, serialization, round engine and aggregation."""

from __future__ import annotations

from pathlib import Path

import torch

from aslora_core.adapters import read_adapter
from aslora_core.config import LrSchedule, ScoreSettings
from aslora_core.factor_choice import Factor, FactorChoice
from aslora_core.factors import AdapterState, SiloUpdate
from aslora_core.rounds import RoundEngine, RoundOutcome
from aslora_core.selection import make_policy
from aslora_core.serialization import update_from_bytes, update_to_bytes
from aslora_core.training.schedule import LearningRates
from aslora_core.training.statistics import published_noise
from tests.training.helpers import encoded_texts, make_trainer, tiny_lora_model

SILOS = 3
ROUNDS = 3
EXACT_RTOL = 1e-12
EXACT_ATOL = 1e-14
SIGMA = 1.0


def _run_rounds(
    tiny_model_dir: Path, policy_name: str
) -> list[tuple[AdapterState, list[SiloUpdate], RoundOutcome]]:
    """Three silos of different sizes, in float64, through the production trainer and engine."""
    model = tiny_lora_model(tiny_model_dir).double()
    state = read_adapter(model)
    policy = make_policy(policy_name, state.layer_names, ScoreSettings(), seed=0, scaling=state.scaling)
    engine = RoundEngine(policy, state, LearningRates(0.5, LrSchedule.CONSTANT, ROUNDS))
    trainers = [
        make_trainer(model, encoded_texts(tiny_model_dir, 16 + 8 * i), silo_id=f"silo-{i:02d}")
        for i in range(SILOS)
    ]
    history: list[tuple[AdapterState, list[SiloUpdate], RoundOutcome]] = []
    for round_index in range(ROUNDS):
        before = engine.state
        selection = engine.plan()
        updates = [
            update_from_bytes(
                update_to_bytes(t.train_round(round_index, before, selection, SIGMA).update),
                published_noise(SIGMA, t.privacy, t.training, t.num_examples, has_head=bool(before.head)),
            )
            for t in trainers
        ]
        outcome = engine.complete(selection, list(reversed(updates)))
        history.append((before, updates, outcome))
    return history


def test_selected_factor_mean_gives_the_mean_product_across_a_switch(tiny_model_dir: Path) -> None:
    history = _run_rounds(tiny_model_dir, "rolora")
    chosen = []
    for before, updates, outcome in history:
        total = sum(u.weight for u in updates)
        after = outcome.state
        for layer in before.layer_names:
            choice = outcome.selection[layer]
            chosen.append(choice)
            trained = choice.factors[0]
            silo_products = []
            for update in updates:
                local = before.layers[layer].replace(trained, update.factors[layer][trained])
                silo_products.append((update.weight / total) * local.product())
            expected = torch.stack(silo_products).sum(dim=0)
            torch.testing.assert_close(
                after.layers[layer].product(), expected, rtol=EXACT_RTOL, atol=EXACT_ATOL
            )
            frozen = Factor.A if trained is Factor.B else Factor.B
            assert torch.equal(after.layers[layer].factor(frozen), before.layers[layer].factor(frozen))
    assert FactorChoice.A in chosen and FactorChoice.B in chosen, "the run must switch factors"


def test_fedit_product_error_is_nonzero_and_reported(tiny_model_dir: Path) -> None:
    history = _run_rounds(tiny_model_dir, "fedit")
    _, _, last = history[-1]
    errors = last.product_error
    assert errors and all(error > 0 for error in errors.values())
