"""The DP local trainer: masked steps, real noise, per-sample gradients, accounting."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from opacus import GradSampleModule
from scipy import stats
from torch import nn

from aslora_core.adapters import read_adapter
from aslora_core.config import ClippingMode, ScoreSettings
from aslora_core.factor_choice import Factor, FactorChoice
from aslora_core.factors import AdapterState, LayerFactors
from aslora_core.policy_traits import POLICY_NAMES, policy_traits
from aslora_core.selection import make_policy
from aslora_core.training.factor_steps import FactorSteps
from aslora_core.training.statistics import published_noise
from tests.training.helpers import encoded_texts, make_trainer, tiny_lora_model, with_nonzero_b

SIGNIFICANCE = 0.001
EPSILON_RECORDS = 32
EPSILON_ROUNDS = 3
"""Rounds each policy trains before the epsilons are compared: enough for aslora to score twice with
statistics of a state whose B is no longer zero."""
EPSILON_SIGMA = 1.0
TRAINER_LR = 0.5
"""The local learning rate, told to `observe` as well for the score."""
SOLE_SILO_WEIGHT = 1.0
DATA_DRIVEN_ESTIMATORS = ("gradient", "hybrid")


def _alternating(state: AdapterState) -> dict[str, FactorChoice]:
    names = state.layer_names
    return {name: FactorChoice.A if i % 2 else FactorChoice.B for i, name in enumerate(names)}


@pytest.mark.parametrize("clipping", [ClippingMode.TRAINED, ClippingMode.JOINT])
def test_masked_step_leaves_unselected_factors_bit_for_bit(
    tiny_model_dir: Path, clipping: ClippingMode
) -> None:
    model = tiny_lora_model(tiny_model_dir)
    start = with_nonzero_b(read_adapter(model))
    selection = _alternating(start)
    trainer = make_trainer(model, encoded_texts(tiny_model_dir, 32), clipping=clipping)
    update = trainer.train_round(0, start, selection, noise_multiplier=1.0).update
    after = read_adapter(model)
    for layer, choice in selection.items():
        trained = choice.factors[0]
        frozen = Factor.A if trained is Factor.B else Factor.B
        assert torch.equal(after.layers[layer].factor(frozen), start.layers[layer].factor(frozen))
        assert not torch.equal(after.layers[layer].factor(trained), start.layers[layer].factor(trained))
        assert set(update.factors[layer]) == {trained}
    for name, tensor in start.head.items():
        assert not torch.equal(after.head[name], tensor)


@pytest.mark.parametrize("secure", [False, True])
def test_released_noise_has_the_implied_standard_deviation(tiny_model_dir: Path, secure: bool) -> None:
    """With A = B = 0 and a frozen head the loss gradient of every factor is exactly zero."""
    model = tiny_lora_model(tiny_model_dir)
    start = read_adapter(model)
    zero = AdapterState(
        layers={
            k: LayerFactors(a=torch.zeros_like(v.a), b=torch.zeros_like(v.b)) for k, v in start.layers.items()
        },
        head=start.head,
        scaling=start.scaling,
    )
    sigma, clip, batch, lr = 1.3, 0.7, 8, 0.5
    trainer = make_trainer(
        model,
        encoded_texts(tiny_model_dir, 32),
        secure=secure,
        batch_size=batch,
        local_steps=1,
        lr=lr,
        head_lr=0.0,
        clip_norm=clip,
    )
    selection = {name: FactorChoice.B for name in zero.layer_names}
    update = trainer.train_round(0, zero, selection, noise_multiplier=sigma).update
    released = torch.cat([update.factors[name][Factor.B].flatten() for name in zero.layer_names]).double()
    noise = (released / -lr).numpy()
    expected_std = sigma * clip / batch
    count = noise.size
    statistic = float(np.sum(noise**2) / expected_std**2)
    low, high = stats.chi2.ppf([SIGNIFICANCE / 2, 1 - SIGNIFICANCE / 2], df=count)
    assert low < statistic < high, (statistic, low, high)
    assert abs(noise.mean()) < 4 * expected_std / np.sqrt(count)


def test_per_sample_gradients_equal_single_example_backward(tiny_model_dir: Path) -> None:
    model = tiny_lora_model(tiny_model_dir).double()
    model.train()  # Opacus captures activations in training mode only; the tiny model has no dropout
    for name, param in model.named_parameters():
        param.requires_grad_("lora_" in name or "modules_to_save" in name)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.1)
    data = encoded_texts(tiny_model_dir, 6)
    batch = data.batch(list(range(6)))
    labels = batch.pop("labels")
    gsm = GradSampleModule(model, batch_first=True, loss_reduction="sum", strict=False)
    nn.functional.cross_entropy(gsm(**batch).logits, labels, reduction="sum").backward()
    trained = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    per_sample = {n: getattr(p, "grad_sample").detach().clone() for n, p in trained}  # noqa: B009
    gsm.to_standard_module()
    for index in range(6):
        model.zero_grad(set_to_none=True)
        single = {k: v[index : index + 1] for k, v in batch.items()}
        loss = nn.functional.cross_entropy(model(**single).logits, labels[index : index + 1], reduction="sum")
        loss.backward()
        for name, param in trained:
            torch.testing.assert_close(per_sample[name][index], param.grad, rtol=0, atol=1e-6)


def test_epsilon_is_equal_across_policies_after_the_same_steps(tiny_model_dir: Path) -> None:
    data = encoded_texts(tiny_model_dir, 32)
    epsilons = {}
    for policy_name in ("aslora", "ffa", "rolora", "lalora"):
        model = tiny_lora_model(tiny_model_dir)
        state = read_adapter(model)
        policy = make_policy(policy_name, state.layer_names, ScoreSettings(), seed=0, scaling=state.scaling)
        trainer = make_trainer(model, data)
        steps = FactorSteps.of(policy.traits, trainer.training)
        for round_index in range(3):
            selection = policy.select(round_index, state)
            result = trainer.train_round(
                round_index, state, selection, noise_multiplier=1.0, factor_steps=steps
            )
            state = read_adapter(model)
            assert result.update.statistics is not None
            policy.observe(round_index, state, [(1.0, result.update.statistics)], lr=0.5)
        epsilons[policy_name] = trainer.epsilon()
    assert epsilons["aslora"] > 0
    assert epsilons["aslora"] == epsilons["ffa"] == epsilons["rolora"] == epsilons["lalora"]


def test_epsilon_is_equal_across_policies_with_data_driven_scores_and_joint_clipping(
    tiny_model_dir: Path,
) -> None:
    """Every policy under joint clipping, aslora with each estimator that reads the released gradient
    statistics: the same steps cost the same epsilon, and aslora's scores really came from statistics."""
    data = encoded_texts(tiny_model_dir, EPSILON_RECORDS)
    runs = [("aslora", estimator) for estimator in DATA_DRIVEN_ESTIMATORS]
    runs += [
        (name, DATA_DRIVEN_ESTIMATORS[0]) for name in POLICY_NAMES if not policy_traits(name).reads_statistics
    ]
    epsilons: dict[tuple[str, str], float] = {}
    for policy_name, estimator in runs:
        model = tiny_lora_model(tiny_model_dir)
        state = read_adapter(model)
        score = ScoreSettings(estimator=estimator)
        policy = make_policy(policy_name, state.layer_names, score, seed=0, scaling=state.scaling)
        trainer = make_trainer(model, data, clipping=ClippingMode.JOINT, lr=TRAINER_LR)
        steps = FactorSteps.of(policy.traits, trainer.training)
        for round_index in range(EPSILON_ROUNDS):
            selection = policy.select(round_index, state)
            statistics = trainer.train_round(
                round_index, state, selection, noise_multiplier=EPSILON_SIGMA, factor_steps=steps
            ).update.statistics
            state = read_adapter(model)
            assert statistics is not None
            assert all(set(statistics.layers[name]) == set(Factor) for name in state.layer_names)
            policy.observe(round_index, state, [(SOLE_SILO_WEIGHT, statistics)], lr=TRAINER_LR)
        if policy_name == "aslora":
            # The public-only prior scores with zero variance; only released statistics give a positive one.
            smoothed = policy.smoothed_scores()
            assert sorted(smoothed) == state.layer_names
            assert all(s.variance > 0 for per in smoothed.values() for s in per.values()), smoothed
        epsilons[policy_name, estimator] = trainer.epsilon()
    reference = epsilons[runs[0]]
    assert reference > 0
    assert set(epsilons.values()) == {reference}, epsilons


def test_joint_clipping_releases_statistics_for_both_factors(tiny_model_dir: Path) -> None:
    model = tiny_lora_model(tiny_model_dir)
    state = read_adapter(model)
    selection = {name: FactorChoice.B for name in state.layer_names}
    trainer = make_trainer(model, encoded_texts(tiny_model_dir, 32), clipping=ClippingMode.JOINT)
    stats_out = trainer.train_round(0, state, selection, noise_multiplier=1.0).update.statistics
    assert stats_out is not None
    assert stats_out.steps == 3
    assert stats_out.noise_variance == pytest.approx((1.0 * 1.0 / 8) ** 2)
    for layer in state.layer_names:
        assert set(stats_out.layers[layer]) == {Factor.A, Factor.B}


@pytest.mark.parametrize(
    ("head_clip_norm", "head_lr", "batch_size"),
    [(None, None, 8), (2.0, None, 8), (2.0, 0.0, 8), (None, None, 64)],
    ids=["one-clip", "head-clipped-apart", "head-frozen", "batch-above-records"],
)
def test_the_published_noise_is_the_noise_the_trainer_added(
    tiny_model_dir: Path, head_clip_norm: float | None, head_lr: float | None, batch_size: int
) -> None:
    model = tiny_lora_model(tiny_model_dir)
    state = read_adapter(model)
    trainer = make_trainer(
        model,
        encoded_texts(tiny_model_dir, 32),
        head_clip_norm=head_clip_norm,
        head_lr=head_lr,
        batch_size=batch_size,
    )
    selection = dict.fromkeys(state.layer_names, FactorChoice.B)
    released = trainer.train_round(0, state, selection, noise_multiplier=1.5).update.statistics
    published = published_noise(
        1.5, trainer.privacy, trainer.training, trainer.num_examples, has_head=bool(state.head)
    )
    assert released is not None
    assert (released.steps, released.noise_variance) == (published.steps, published.noise_variance)
