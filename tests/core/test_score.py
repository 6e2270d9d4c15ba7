"""The AS-LoRA score: closed-form moments, estimators, switching, and choices on a quadratic loss."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import torch

from aslora_core.config import ScoreSettings
from aslora_core.factor_choice import Factor
from aslora_core.factors import AdapterState, FactorStatistics, LayerFactors, SiloStatistics
from aslora_core.selection.estimators import make_estimator
from aslora_core.selection.evidence import cross_step_variance, noise_recoil, pooled_evidence
from aslora_core.selection.hybrid import shrink_toward_prior
from aslora_core.selection.score import Evidence, RoundContext, Score, partner_geometry, prior_evidence
from aslora_core.selection.switching import Smoothed, should_switch

ESTIMATORS = ("norm", "gradient", "hybrid")
CURVATURE = 1.0
STEPS = 5
RANK = 4
MC_TOL = 0.05
"""Relative tolerance of Monte Carlo checks of closed-form moments (runs sized for ~1-2% error)."""


def cross_step(vectors: Sequence[torch.Tensor]) -> float:
    """What a silo computes: the mean over ordered pairs k != k' of <g_k, g_k'>."""
    total = torch.stack(list(vectors)).sum(0)
    tau = len(vectors)
    return float((total.square().sum() - sum(v.square().sum() for v in vectors)) / (tau * (tau - 1)))


# ---------------------------------------------------------------- closed-form moments


def test_cross_step_variance_matches_monte_carlo() -> None:
    gen = torch.Generator().manual_seed(0)
    draws, tau, noise = 20000, STEPS, 0.3
    mu = torch.randn(6, RANK, generator=gen, dtype=torch.float64)
    a = torch.randn(RANK, 9, generator=gen, dtype=torch.float64)
    g = mu + noise**0.5 * torch.randn(draws, tau, *mu.shape, generator=gen, dtype=torch.float64)

    def estimates(x: torch.Tensor) -> torch.Tensor:
        total = x.sum(1)
        return (total.square().sum((-2, -1)) - x.square().sum((1, 2, 3))) / (tau * (tau - 1))

    plain = estimates(g)
    assert float(plain.mean()) == pytest.approx(float(mu.square().sum()), rel=MC_TOL)
    expected = cross_step_variance(float(mu.square().sum()), noise, tau, 1.0, mu.numel())
    assert float(plain.var()) == pytest.approx(expected, rel=MC_TOL)

    geometry = partner_geometry(LayerFactors(a=a, b=torch.zeros(6, RANK, dtype=torch.float64)), Factor.B)
    pure_noise = estimates((g - mu) @ a)
    exact = cross_step_variance(0.0, noise, tau, geometry.op_sq, geometry.free_dim * geometry.gram_sq)
    assert float(pure_noise.var()) == pytest.approx(exact, rel=MC_TOL)
    projected = estimates(g @ a)
    bound = cross_step_variance(
        float((mu @ a).square().sum()), noise, tau, geometry.op_sq, 6 * geometry.gram_sq
    )
    assert exact < float(projected.var()) < bound * (1 + MC_TOL)


def test_noise_recoil_is_the_bias_a_trained_factors_own_noise_puts_in_its_estimates() -> None:
    # quadratic loss in dW: each noisy B step moves B, and every later gradient pulls back against it
    gen = torch.Generator().manual_seed(4)
    draws, tau, noise, scaling = 20000, 6, 0.5, 1.5
    a = torch.randn(RANK, 10, generator=gen, dtype=torch.float64)
    target = torch.zeros(12, 10, dtype=torch.float64)  # no signal: only the recoil, and little MC noise
    rate = 0.2 / float(torch.linalg.matrix_norm(a, 2)) ** 2  # eta lambda s^2, lambda = 1
    lr = rate / scaling**2
    b = torch.zeros(draws, 12, RANK, dtype=torch.float64)
    clean, noisy = [], []
    for _ in range(tau):
        g = scaling * (scaling * b @ a - target) @ a.mT
        clean.append(g)
        noisy.append(g + noise**0.5 * torch.randn(g.shape, generator=gen, dtype=torch.float64))
        b = b - lr * noisy[-1]

    def estimate(vectors: list[torch.Tensor]) -> torch.Tensor:
        total = torch.stack(vectors).sum(0)
        squares = sum(v.square().sum((-2, -1)) for v in vectors)
        return (total.square().sum((-2, -1)) - squares) / (tau * (tau - 1))

    geometry = partner_geometry(LayerFactors(a=a, b=b[0]), Factor.B)
    grad_recoil, proj_recoil = noise_recoil(geometry, tau, noise, rate)
    grad_bias = estimate(noisy) - estimate(clean)
    proj_bias = estimate([g @ a for g in noisy]) - estimate([g @ a for g in clean])
    assert float(grad_bias.mean()) == pytest.approx(-grad_recoil, rel=MC_TOL)
    assert float(proj_bias.mean()) == pytest.approx(-proj_recoil, rel=MC_TOL)
    assert noise_recoil(geometry, tau, noise, 0.0) == (0.0, 0.0)


def test_norm_prior_is_the_expectation_under_an_isotropic_gradient() -> None:
    gen = torch.Generator().manual_seed(1)
    gamma, scaling, draws = 0.7, 2.0, 20000
    layer = LayerFactors(
        a=torch.randn(RANK, 9, generator=gen, dtype=torch.float64),
        b=torch.randn(7, RANK, generator=gen, dtype=torch.float64),
    )
    big_g = gamma**0.5 * torch.randn(draws, 7, 9, generator=gen, dtype=torch.float64)
    g_b, g_a = scaling * big_g @ layer.a.mT, scaling * layer.b.mT @ big_g
    cases = [(Factor.B, g_b, g_b @ layer.a), (Factor.A, g_a, layer.b @ g_a)]
    for factor, grad, proj in cases:
        prior = prior_evidence(partner_geometry(layer, factor), scaling, gamma)
        assert float(grad.square().sum((-2, -1)).mean()) == pytest.approx(prior.grad_sq, rel=MC_TOL)
        assert float(proj.square().sum((-2, -1)).mean()) == pytest.approx(prior.proj_sq, rel=MC_TOL)


def test_round_context_weights_silos_and_their_noise() -> None:
    stats = [(1.0, SiloStatistics({}, STEPS, 2.0)), (3.0, SiloStatistics({}, STEPS, 4.0))]
    context = RoundContext.of_round(stats, lr=0.1, scaling=2.0)
    assert context.steps == STEPS
    assert context.noise == pytest.approx(0.25**2 * 2.0 + 0.75**2 * 4.0)
    uneven = RoundContext.of_round(
        [(1.0, SiloStatistics({}, 2, 1.0)), (1.0, SiloStatistics({}, 6, 1.0))], 0.1, 2.0
    )
    assert uneven.steps == 4.0
    assert uneven.noise == pytest.approx((0.25 * 2 + 0.25 * 6) / 4.0)


# ---------------------------------------------------------------- estimators and switching


def _layer(gen: torch.Generator, b_scale: float = 1.0) -> LayerFactors:
    return LayerFactors(
        a=torch.randn(RANK, 10, generator=gen), b=b_scale * torch.randn(8, RANK, generator=gen)
    )


def test_gradient_estimator_uses_statistics_and_falls_back_to_the_prior() -> None:
    gen = torch.Generator().manual_seed(2)
    state = AdapterState(layers={"x": _layer(gen), "y": _layer(gen)}, scaling=1.0)
    settings = ScoreSettings(estimator="gradient", prior_gradient_scale=0.01, curvature_scale=0.0)
    evidence = {"x": {Factor.B: FactorStatistics(grad_sq=5.0, proj_sq=1.0)}}
    stats = [(1.0, SiloStatistics(evidence, STEPS, 0.0)), (1.0, SiloStatistics(evidence, 1, 0.0))]
    scores = make_estimator(settings, 1.0).scores(state, stats, lr=1.0, trained={})
    assert scores["x", Factor.B] == Score(value=5.0, variance=0.0)  # the one-step silo is ignored
    norm = make_estimator(
        ScoreSettings(estimator="norm", prior_gradient_scale=0.01, curvature_scale=0.0), 1.0
    )
    norm_scores = norm.scores(state, stats, lr=1.0, trained={})
    for key in (("x", Factor.A), ("y", Factor.A), ("y", Factor.B)):
        assert scores[key] == norm_scores[key]
        assert norm_scores[key].variance == 0.0


def test_hybrid_trusts_precise_evidence_and_shrinks_noisy_evidence_to_the_pooled_prior() -> None:
    layers = 20
    units = {k: Evidence(grad_sq=1.0 + k % 3, proj_sq=1.0 + k % 3) for k in range(layers)}
    precise = {k: Evidence(2.0 * u.grad_sq + (-1) ** k, 2.0 * u.proj_sq) for k, u in units.items()}
    assert shrink_toward_prior(precise, units, 1.0) == precise
    noisy = {k: Evidence(e.grad_sq, e.proj_sq, grad_var=1e6, proj_var=1e6) for k, e in precise.items()}
    shrunk = shrink_toward_prior(noisy, units, 1.0)
    gamma = sum(e.grad_sq for e in precise.values()) / sum(u.grad_sq for u in units.values())
    for key, unit in units.items():
        prior, raw = gamma * unit.grad_sq, noisy[key].grad_sq
        # most of the way to the prior (not all: the pooled gamma is uncertain too)
        assert abs(shrunk[key].grad_sq - prior) < 0.15 * abs(raw - prior)
        assert shrunk[key].grad_var < 0.15 * noisy[key].grad_var
    no_evidence = shrink_toward_prior(dict.fromkeys(units), units, 0.5)
    assert no_evidence[2] == Evidence(1.5, 1.5)


def test_ema_variance_tends_to_the_stationary_factor() -> None:
    ema, smoothed = 0.6, Smoothed.first(Score(1.0, 1.0))
    for _ in range(100):
        smoothed = smoothed.updated(Score(1.0, 1.0), ema)
    assert smoothed.mean == pytest.approx(1.0)
    assert smoothed.variance == pytest.approx((1 - ema) / (1 + ema))


def test_switching_needs_z_standard_errors_or_a_positive_sign_without_noise() -> None:
    current, other = Smoothed(1.0, 0.5), Smoothed(2.5, 0.5)  # difference 1.5, SE 1
    assert should_switch(current, other, z=1.0)
    assert not should_switch(current, other, z=2.0)
    assert should_switch(Smoothed(0.0, 0.0), Smoothed(1e-12, 0.0), z=2.0)
    assert not should_switch(Smoothed(0.0, 0.0), Smoothed(0.0, 0.0), z=0.0)


def test_pooled_evidence_weights_silos_and_adds_variances_with_squared_weights() -> None:
    gen = torch.Generator().manual_seed(3)
    layer = _layer(gen)
    geometry = partner_geometry(layer, Factor.B)
    stats = [
        (w, SiloStatistics({"x": {Factor.B: FactorStatistics(g, 0.0)}}, STEPS, 0.1))
        for w, g in ((1.0, 2.0), (3.0, 6.0))
    ]
    pooled = pooled_evidence(stats, "x", Factor.B, geometry)
    assert pooled is not None
    assert pooled.grad_sq == pytest.approx(5.0)
    single = cross_step_variance(5.0, 0.1, STEPS, 1.0, geometry.size)
    assert pooled.grad_var == pytest.approx((0.25**2 + 0.75**2) * single)
    assert pooled_evidence(stats, "x", Factor.A, geometry) is None
