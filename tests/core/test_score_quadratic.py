"""The score on a quadratic loss with known curvature: does it pick the factor that really does better?

Loss per layer: L = (lambda / 2) ||s B A - W*||_F^2, so G = lambda (s B A - W*) and the curvature in
dW is exactly lambda. A draw has four layers (shapes 8..16, rank 4, log-uniform factor scales), three
silos with random weights, five local steps, a step size that is a log-uniform fraction (0.01..0.2) of
the stability limit 1 / (lambda s^2 max(||A||_2^2, ||B||_2^2)) and a DP noise variance spread over six
decades. Round t: every silo trains B from the global state with noisy steps and releases what a real
silo releases (cross-step inner products of its noisy gradients of both factors); the server averages
B. From that new state, simulated noisy rounds train only B or only A; the lower mean loss marks the
empirically better factor. A layer counts only where the gap is non-trivial: more than four Monte
Carlo standard errors and more than a fifth of the larger expected decrease. The estimator sees the
new state and the released statistics; its choice is the factor with the higher score (z plays no part
in a single comparison). `norm` is given the true per-coordinate variance of G as its prior.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import torch

from aslora_core.config import ScoreSettings
from aslora_core.factor_choice import Factor, FactorChoice
from aslora_core.factors import AdapterState, FactorStatistics, LayerFactors, SiloStatistics
from aslora_core.selection import make_policy
from aslora_core.selection.estimators import make_estimator

CURVATURE = 1.0
STEPS = 5
RANK = 4
LAYERS = 4
SILOS = 3
SIMULATIONS = 400
DRAWS = 40
MIN_RATE = 0.9
RELATIVE_GAP = 0.2
GAP_STANDARD_ERRORS = 4.0
STEP_FRACTION = (0.01, 0.2)
"""Range of the step size as a fraction of the stability limit."""


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """The simulations are many small tensor ops: on a busy machine extra threads only contend."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@dataclass(frozen=True)
class Draw:
    """One random federated round on independent quadratic layers."""

    scaling: float
    lr: float
    noise: float
    weights: list[float]
    layers: dict[str, LayerFactors]
    targets: dict[str, torch.Tensor]
    gamma: float
    """Per-coordinate variance of G (the `norm` prior made exact)."""
    steps: int = STEPS
    simulations: int = SIMULATIONS


def _log_uniform(gen: torch.Generator, low: float, high: float) -> float:
    return math.exp(math.log(low) + math.log(high / low) * float(torch.rand((), generator=gen)))


def make_draw(seed: int, rank_one_target: bool) -> Draw:
    gen = torch.Generator().manual_seed(seed)
    layers, targets = {}, {}
    for i in range(LAYERS):
        m, n = (int(torch.randint(8, 17, (), generator=gen)) for _ in range(2))
        a = torch.randn(RANK, n, generator=gen, dtype=torch.float64) * _log_uniform(gen, 0.05, 0.5)
        b = torch.randn(m, RANK, generator=gen, dtype=torch.float64) * _log_uniform(gen, 0.05, 0.5)
        layers[f"layer{i}"] = LayerFactors(a=a, b=b)
        if rank_one_target:
            u, v = (
                torch.randn(m, 1, generator=gen, dtype=torch.float64),
                torch.randn(1, n, generator=gen, dtype=torch.float64),
            )
            targets[f"layer{i}"] = 2.0 * u @ v
        else:
            targets[f"layer{i}"] = torch.randn(m, n, generator=gen, dtype=torch.float64)
    scaling = 1.0 + seed % 2
    sharpest = max(float(torch.linalg.matrix_norm(t, 2)) ** 2 for f in layers.values() for t in (f.a, f.b))
    lr = _log_uniform(gen, *STEP_FRACTION) / (CURVATURE * scaling**2 * sharpest)
    noise = _log_uniform(gen, 1e-4, 100.0) * 0.05 * scaling**2
    weights = [0.5 + float(w) for w in torch.rand(SILOS, generator=gen)]
    gamma = CURVATURE**2 * (4.0 if rank_one_target else 1.0)
    return Draw(scaling, lr, noise, weights, layers, targets, gamma)


def _gradients(
    layer: LayerFactors, target: torch.Tensor, scaling: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(g_B, g_A) of the quadratic loss at `layer` (batched over leading dimensions)."""
    big_g = CURVATURE * (scaling * layer.b @ layer.a - target)
    return scaling * big_g @ layer.a.mT, scaling * layer.b.mT @ big_g


def _cross_step(vectors: list[torch.Tensor]) -> float:
    total, tau = torch.stack(vectors).sum(0), len(vectors)
    return float((total.square().sum() - sum(v.square().sum() for v in vectors)) / (tau * (tau - 1)))


def silo_round(
    draw: Draw, name: str, gen: torch.Generator
) -> tuple[torch.Tensor, dict[Factor, FactorStatistics]]:
    """One silo trains B for a round; returns its B and the statistics it releases."""
    layer, sd = draw.layers[name], math.sqrt(draw.noise)
    b, noisy_b, noisy_a = layer.b, [], []
    for _ in range(draw.steps):
        g_b, g_a = _gradients(LayerFactors(a=layer.a, b=b), draw.targets[name], draw.scaling)
        noisy_b.append(g_b + sd * torch.randn(g_b.shape, generator=gen, dtype=g_b.dtype))
        noisy_a.append(g_a + sd * torch.randn(g_a.shape, generator=gen, dtype=g_a.dtype))
        b = b - draw.lr * noisy_b[-1]
    statistics = {
        Factor.B: FactorStatistics(_cross_step(noisy_b), _cross_step([g @ layer.a for g in noisy_b])),
        Factor.A: FactorStatistics(_cross_step(noisy_a), _cross_step([layer.b @ g for g in noisy_a])),
    }
    return b, statistics


def expected_loss(
    draw: Draw, layer: LayerFactors, name: str, factor: Factor, gen: torch.Generator
) -> tuple[float, float]:
    """Mean and Monte Carlo standard error of the loss after one federated round training `factor`.

    Training B, x = B and L = (lambda / 2) (s^2 <x P, x> - 2 s <x, Q> + ||W*||^2) with P = A A^T and
    Q = W* A^T; training A the same holds for x = A^T, P = B^T B, Q = W*^T B. The dynamics are linear,
    so x = x_det + e: a noise-free path plus noise e_{k+1} = e_k (I - eta lambda s^2 P) - eta zeta_k.
    The noise's linear term in L has mean zero, so only the quadratic term is simulated (a control
    variate that leaves the mean exact and removes most of the Monte Carlo variance).
    """
    target = draw.targets[name]
    if factor is Factor.B:
        path, gram, cross = layer.b, layer.a @ layer.a.mT, target @ layer.a.mT
    else:
        path, gram, cross = layer.a.mT, layer.b.mT @ layer.b, target.mT @ layer.b
    p = torch.tensor(draw.weights, dtype=torch.float64) / sum(draw.weights)
    decay = torch.eye(gram.shape[0], dtype=torch.float64) - draw.lr * CURVATURE * draw.scaling**2 * gram
    noise = torch.zeros(draw.simulations, len(p), *path.shape, dtype=torch.float64)
    for _ in range(draw.steps):
        path = path - draw.lr * CURVATURE * draw.scaling * (draw.scaling * path @ gram - cross)
        zeta = math.sqrt(draw.noise) * torch.randn(noise.shape, generator=gen, dtype=torch.float64)
        noise = noise @ decay - draw.lr * zeta
    quadratic = draw.scaling**2 * ((path @ gram) * path).sum() - 2 * draw.scaling * (path * cross).sum()
    noise_free = CURVATURE / 2 * float(quadratic + target.square().sum())
    mean_noise = torch.einsum("k,skij->sij", p, noise)
    noise_cost = CURVATURE / 2 * draw.scaling**2 * ((mean_noise @ gram) * mean_noise).sum((-2, -1))
    return noise_free + float(noise_cost.mean()), float(noise_cost.std()) / math.sqrt(draw.simulations)


def run_round(
    draw: Draw, seed: int
) -> tuple[AdapterState, list[tuple[float, SiloStatistics]], dict[str, Factor]]:
    """The round that produces statistics, the aggregated state, and the empirically better next factor."""
    gen = torch.Generator().manual_seed(10_000 + seed)
    p = [w / sum(draw.weights) for w in draw.weights]
    new_b: dict[str, torch.Tensor] = {}
    released = []
    for weight, share in zip(draw.weights, p, strict=True):
        layers = {}
        for name in draw.layers:
            b, layers[name] = silo_round(draw, name, gen)
            new_b[name] = new_b[name] + share * b if name in new_b else share * b
        released.append((weight, SiloStatistics(layers=layers, steps=draw.steps, noise_variance=draw.noise)))
    state = AdapterState(
        {n: f.replace(Factor.B, new_b[n]) for n, f in draw.layers.items()}, scaling=draw.scaling
    )
    better = {}
    for name, layer in state.layers.items():
        start = float(CURVATURE / 2 * (draw.scaling * layer.product() - draw.targets[name]).square().sum())
        (loss_b, se_b), (loss_a, se_a) = (
            expected_loss(draw, layer, name, f, gen) for f in (Factor.B, Factor.A)
        )
        gap = loss_a - loss_b
        if abs(gap) > GAP_STANDARD_ERRORS * math.hypot(se_a, se_b) and abs(gap) > RELATIVE_GAP * max(
            start - loss_a, start - loss_b
        ):
            better[name] = Factor.B if gap > 0 else Factor.A
    return state, released, better


def agreement(rank_one_target: bool) -> dict[str, tuple[int, int]]:
    """Per estimator: (layers where the score chose the empirically better factor, layers counted)."""
    counts = {name: [0, 0] for name in ("norm", "gradient", "hybrid")}
    for seed in range(DRAWS):
        draw = make_draw(seed, rank_one_target)
        state, released, better = run_round(draw, seed)
        for estimator, count in counts.items():
            settings = ScoreSettings(
                estimator=estimator, curvature_scale=CURVATURE, prior_gradient_scale=draw.gamma
            )
            scores = make_estimator(settings, draw.scaling).scores(
                state, released, draw.lr, trained=dict.fromkeys(state.layers, Factor.B)
            )
            for name, best in better.items():
                chosen = Factor.A if scores[name, Factor.A].value > scores[name, Factor.B].value else Factor.B
                count[0] += chosen is best
                count[1] += 1
    return {name: (hits, total) for name, (hits, total) in counts.items()}


def test_score_picks_the_empirically_better_factor_with_isotropic_gradients() -> None:
    result = agreement(rank_one_target=False)
    for estimator, (hits, total) in result.items():
        assert total >= DRAWS * LAYERS // 2, result
        assert hits / total >= MIN_RATE, (estimator, result)


def test_statistics_beat_the_isotropic_prior_when_the_gradient_has_a_preferred_direction() -> None:
    result = agreement(rank_one_target=True)
    rates = {estimator: hits / total for estimator, (hits, total) in result.items()}
    assert rates["gradient"] >= rates["norm"] + 0.05, result
    assert rates["hybrid"] >= rates["norm"] + 0.05, result


def test_under_large_noise_the_factor_with_the_cheaper_noise_wins() -> None:
    """DP noise on B reaches dW through A and vice versa: with noise far above the signal, the factor
    whose partner is smaller must be trained, by every estimator and by the policy (z = 2).

    The layers are as wide as real ones (1024, rank 8): the noise cost outgrows the sampling error of
    the released statistics only as sqrt(m r), and narrow layers leave the gradient estimator unsure
    (it then keeps its factor, as z asks). The round is short relative to the curvature
    (eta lambda s^2 tau ||partner||_2^2 = 0.5), where the second-order model holds.
    """
    gen = torch.Generator().manual_seed(7)
    size, rank, small, large, steps, target_scale = 1024, 8, 0.01, 0.03, 10, 1e-3

    def factors(a_scale: float, b_scale: float) -> LayerFactors:
        a = torch.randn(rank, size, generator=gen, dtype=torch.float64) * a_scale
        return LayerFactors(a=a, b=torch.randn(size, rank, generator=gen, dtype=torch.float64) * b_scale)

    layers = {"cheap-a": factors(large, small), "cheap-b": factors(small, large)}
    # the target sits just off the current product, so G is small, isotropic noise of variance gamma:
    # a small signal, and so a small noise swamping it, keeps the factors' sizes what the test set up
    gamma = (CURVATURE * target_scale) ** 2
    targets = {
        n: f.product() + target_scale * torch.randn(size, size, generator=gen, dtype=torch.float64)
        for n, f in layers.items()
    }
    sharpest = max(float(torch.linalg.matrix_norm(f.a, 2)) ** 2 for f in layers.values())
    lr = 0.5 / (steps * CURVATURE * sharpest)
    # noise cost (eta lambda / 2) v m ||A||^2 ten times the signal ||g_B||^2 ~ gamma m ||A||^2
    noise = 20.0 * gamma / (lr * CURVATURE)
    draw = Draw(1.0, lr, noise, [1.0, 2.0], layers, targets, gamma=gamma, steps=steps, simulations=50)
    state, released, better = run_round(draw, seed=7)
    # square layers: the noise on B costs ||A||_F^2, the noise on A costs ||B||_F^2
    cheaper = {
        name: Factor.A if f.b.square().sum() < f.a.square().sum() else Factor.B
        for name, f in state.layers.items()
    }
    assert cheaper == {"cheap-a": Factor.A, "cheap-b": Factor.B}
    assert better == cheaper
    for estimator in ("norm", "gradient", "hybrid"):
        settings = ScoreSettings(
            estimator=estimator, curvature_scale=CURVATURE, prior_gradient_scale=draw.gamma
        )
        scores = make_estimator(settings, draw.scaling).scores(
            state, released, draw.lr, trained=dict.fromkeys(state.layers, Factor.B)
        )
        for name, factor in cheaper.items():
            other = Factor.B if factor is Factor.A else Factor.A
            assert scores[name, factor].value > scores[name, other].value, (estimator, name)
        policy = make_policy("aslora", list(layers), settings, seed=0, scaling=draw.scaling)
        policy.observe(0, state, released, draw.lr)
        assert policy.select(1, state) == {name: FactorChoice.of(f) for name, f in cheaper.items()}, estimator
