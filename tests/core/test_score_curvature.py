"""The curvature the score measures, on quadratic losses whose layers differ in curvature.

Loss per layer l: L_l = (lambda_l / 2) ||s B A - W*||_F^2, so the curvature in dW is exactly lambda_l, and
no part of the score is told it. Silos train B with noisy SGD steps and release what the trainer
releases (`CrossStepStatistics`, the real accumulation code); the coordinator's code pools, corrects and
smooths it (`pooled_curvature`, `CurvatureTracker`). Checked: the secant estimate is unbiased within its
standard error and its standard error is calibrated, the noise bias it removes is many standard errors
(so these checks fail without the correction), the estimate is significant at the SST-2 regime's noise,
and with the estimate the score picks the better factor more often than with the constant when layers'
curvatures differ tenfold, and as often when they are equal.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import torch

from aslora_core.config import CurvatureSource, ScoreSettings
from aslora_core.factor_choice import Factor
from aslora_core.factors import AdapterState, LayerFactors, SiloStatistics
from aslora_core.selection.curvature import CurvatureTracker, pooled_curvature
from aslora_core.selection.estimators import make_estimator
from aslora_core.selection.switching import Smoothed
from aslora_core.training.statistics import CrossStepStatistics

CURVATURE_SCALE = 1.0
"""The score's constant lambda (`curvature_scale`) in the selection draws."""
SELECTION_RANK = 8
SELECTION_LAYERS = 4
SELECTION_SIZE = (384, 512)
"""As wide as real layers: the secant's signal grows against the noise as sqrt(entries x pairs)."""
SELECTION_STEPS = 3
SELECTION_SILOS = 10
SELECTION_DRAWS = 30
STEP_FRACTION = (0.05, 0.3)
"""eta lambda s^2 ||partner||_2^2 tau of the sharpest layer: small steps, where the score's model holds."""
FACTOR_SCALE = (0.1, 0.3)
GAMMA = 1e-2
LAMBDA_STAR_RANGE = 10.0
RELATIVE_GAP = 0.2
B_SCALE = 0.05
TARGET_OFFSET = {"flat": 0.1, "sharp": 0.01}
UNBIASED_SIZE = 64
UNBIASED_RANK = 4
UNBIASED_NOISE = 1.0
UNBIASED_ROUNDS = 300
CALIBRATION_TOLERANCE = 0.2
"""Relative tolerance of the mean reported variance against the observed one (300 rounds: about 0.1
sampling error of a variance)."""
MIN_BIAS_ERRORS = 100.0
SEED_OFFSET = 1000
"""The selection draws' round noise is seeded apart from the draws themselves."""
SST2_LAYERS = 4
SST2_WIDTH = 384
SST2_RANK = 8
SST2_SCALING = 2.0
SST2_LR = 4.0
SST2_STEPS = 3
SST2_ROUNDS = 6
SST2_SIGMA = 0.83
SST2_CLIP = 0.1
SST2_CLIP_GROUPS = 2
SST2_BATCH = 512
SST2_SILOS = (14833.0, 11052.0, 19597.0, 16875.0, 4992.0)
"""The five silos' record counts (their weights) in the SST-2 study's Dirichlet-0.5 split."""
SST2_GRADIENT_VARIANCE = 1e-7
"""Per-coordinate variance of G: ||g_B|| about 0.02, a share of the clip norm 0.1 among 24 factors."""


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Many small tensor ops: on a busy machine extra threads only contend."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@dataclass(frozen=True)
class Federation:
    """Quadratic layers with their own curvature, and how the silos train them."""

    layers: dict[str, LayerFactors]
    targets: dict[str, torch.Tensor]
    curvatures: dict[str, float]
    scaling: float
    lr: float
    noise: float
    """Per-coordinate variance of the DP noise on one step's mean gradient."""
    weights: tuple[float, ...]
    steps: int

    def gradients(self, name: str, layer: LayerFactors) -> tuple[torch.Tensor, torch.Tensor]:
        """(g_B, g_A) of layer `name`'s loss at `layer`."""
        big_g = self.curvatures[name] * (self.scaling * layer.b @ layer.a - self.targets[name])
        return self.scaling * big_g @ layer.a.mT, self.scaling * layer.b.mT @ big_g

    def state(self) -> AdapterState:
        """The global adapter the round starts from."""
        return AdapterState(self.layers, scaling=self.scaling)


def silo_round(
    federation: Federation, gen: torch.Generator
) -> tuple[dict[str, torch.Tensor], SiloStatistics]:
    """One silo trains B of every layer for a round with noisy SGD; its new B and its released statistics
    (both factors' noisy gradients, the secants of B's steps), computed by the trainer's own code."""
    keys = frozenset((name, Factor.B) for name in federation.layers)
    statistics = CrossStepStatistics(federation.state(), step_size=federation.lr, trained=keys)
    bs = {name: layer.b for name, layer in federation.layers.items()}
    sd = math.sqrt(federation.noise)
    for _ in range(federation.steps):
        noisy = {}
        for name, layer in federation.layers.items():
            for factor, grad in zip(
                (Factor.B, Factor.A),
                federation.gradients(name, layer.replace(Factor.B, bs[name])),
                strict=True,
            ):
                noisy[name, factor] = grad + sd * torch.randn(grad.shape, generator=gen, dtype=grad.dtype)
        statistics.add_step(noisy)
        bs = {name: b - federation.lr * noisy[name, Factor.B] for name, b in bs.items()}
    return bs, SiloStatistics(statistics.finish(), statistics.steps, federation.noise)


def federated_round(
    federation: Federation, gen: torch.Generator
) -> tuple[AdapterState, list[tuple[float, SiloStatistics]]]:
    """Every silo trains B; the weighted mean of B and the released statistics."""
    total = sum(federation.weights)
    new_b: dict[str, torch.Tensor] = {}
    released = []
    for weight in federation.weights:
        bs, statistics = silo_round(federation, gen)
        for name, b in bs.items():
            new_b[name] = new_b.get(name, torch.zeros_like(b)) + weight / total * b
        released.append((weight, statistics))
    layers = {name: layer.replace(Factor.B, new_b[name]) for name, layer in federation.layers.items()}
    return AdapterState(layers, scaling=federation.scaling), released


def expected_loss(federation: Federation, layer: LayerFactors, name: str, factor: Factor) -> float:
    """Layer `name`'s expected loss after a federated round that trains `factor` from `layer`, exactly.

    Training B, x = B and L = (lambda / 2) (s^2 <x P, x> - 2 s <x, Q> + ||W*||^2) with P = A A^T and
    Q = W* A^T; training A the same holds for x = A^T, P = B^T B, Q = W*^T B. The dynamics are linear:
    x = x_det + e with the noise-free path x_det and e = -eta sum_i p_i sum_k zeta_ik D^(tau-1-k),
    D = I - eta lambda s^2 P, so E L = L(x_det) + (lambda / 2) s^2 eta^2 v (sum_i p_i^2) f
    sum_j tr(D^j P D^j), with f the rows of x.
    """
    lam, s, target = federation.curvatures[name], federation.scaling, federation.targets[name]
    if factor is Factor.B:
        path, gram, cross = layer.b, layer.a @ layer.a.mT, target @ layer.a.mT
    else:
        path, gram, cross = layer.a.mT, layer.b.mT @ layer.b, target.mT @ layer.b
    decay = torch.eye(gram.shape[0], dtype=torch.float64) - federation.lr * lam * s**2 * gram
    power = torch.eye(gram.shape[0], dtype=torch.float64)
    spread = 0.0
    for _ in range(federation.steps):
        path = path - federation.lr * lam * s * (s * path @ gram - cross)
        spread += float(torch.trace(power @ gram @ power))
        power = power @ decay
    quadratic = s**2 * ((path @ gram) * path).sum() - 2 * s * (path * cross).sum()
    shares_sq = sum(w**2 for w in federation.weights) / sum(federation.weights) ** 2
    noise_cost = lam / 2 * s**2 * federation.lr**2 * federation.noise * shares_sq * path.shape[0] * spread
    return lam / 2 * float(quadratic + target.square().sum()) + noise_cost


def better_factors(federation: Federation, state: AdapterState) -> dict[str, Factor]:
    """Per layer, the factor whose next round lowers the true loss more, where the gap is more than
    RELATIVE_GAP of the larger expected decrease."""
    better = {}
    for name, layer in state.layers.items():
        lam, s = federation.curvatures[name], federation.scaling
        start = lam / 2 * float((s * layer.product() - federation.targets[name]).square().sum())
        loss_b, loss_a = (expected_loss(federation, layer, name, f) for f in (Factor.B, Factor.A))
        if abs(loss_a - loss_b) > RELATIVE_GAP * max(start - loss_a, start - loss_b):
            better[name] = Factor.B if loss_a > loss_b else Factor.A
    return better


def _log_uniform(gen: torch.Generator, low: float, high: float) -> float:
    return math.exp(math.log(low) + math.log(high / low) * float(torch.rand((), generator=gen)))


def selection_draw(seed: int, spread: float) -> Federation:
    """Layers where the curvature decides: DP noise priced against an isotropic gradient.

    With G of per-coordinate variance gamma and small steps, the score of B minus that of A is
    eta s^2 (m ||A||^2 - n ||B||^2) (gamma - eta lambda v_eff / 2): the factor whose partner moves dW more
    gains more signal and pays more noise, and which wins flips at lambda* = 2 gamma / (eta v_eff). Each
    draw puts lambda* log-uniformly within a factor LAMBDA_STAR_RANGE of CURVATURE_SCALE; its layers
    alternate between curvatures CURVATURE_SCALE / sqrt(spread) and CURVATURE_SCALE * sqrt(spread), each
    with its target off the product so that G has variance GAMMA, and the score is told neither curvature
    (the `norm` prior is given the true GAMMA, as in test_score_quadratic).
    """
    gen = torch.Generator().manual_seed(seed)
    scaling = 1.0 + seed % 2
    layers, targets, curvatures = {}, {}, {}
    for i in range(SELECTION_LAYERS):
        name = f"layer{i}"
        m, n = (int(torch.randint(SELECTION_SIZE[0], SELECTION_SIZE[1] + 1, (), generator=gen)) for _ in "mn")
        a = torch.randn(SELECTION_RANK, n, generator=gen, dtype=torch.float64) * _log_uniform(
            gen, *FACTOR_SCALE
        )
        b = torch.randn(m, SELECTION_RANK, generator=gen, dtype=torch.float64) * _log_uniform(
            gen, *FACTOR_SCALE
        )
        layers[name] = LayerFactors(a=a, b=b)
        curvatures[name] = CURVATURE_SCALE * math.sqrt(spread) ** (1 if i % 2 else -1)
        offset = math.sqrt(GAMMA) / curvatures[name] * torch.randn(m, n, generator=gen, dtype=torch.float64)
        targets[name] = scaling * layers[name].product() + offset
    sharpest = max(
        lam * float(torch.linalg.matrix_norm(t, 2)) ** 2
        for name, lam in curvatures.items()
        for t in (layers[name].a, layers[name].b)
    )
    lr = _log_uniform(gen, *STEP_FRACTION) / (scaling**2 * sharpest * SELECTION_STEPS)
    weights = tuple(0.5 + float(w) for w in torch.rand(SELECTION_SILOS, generator=gen))
    shares_sq = sum(w**2 for w in weights) / sum(weights) ** 2
    flip = CURVATURE_SCALE * _log_uniform(gen, 1 / LAMBDA_STAR_RANGE, LAMBDA_STAR_RANGE)
    noise = 2 * GAMMA / (lr * flip) / shares_sq
    return Federation(layers, targets, curvatures, scaling, lr, noise, weights, SELECTION_STEPS)


# ---------------------------------------------------------------- the estimator


def _one_layer(
    gen: torch.Generator, curvatures: dict[str, float], size: int, rank: int, scaling: float
) -> tuple[dict[str, LayerFactors], dict[str, torch.Tensor]]:
    """Layers of `size` x `size` at rank `rank`, A as PEFT initialises it and B small, targets random."""
    layers, targets = {}, {}
    for name in curvatures:
        bound = 1 / math.sqrt(size)
        a = (2 * torch.rand(rank, size, generator=gen, dtype=torch.float64) - 1) * bound
        b = B_SCALE * torch.randn(size, rank, generator=gen, dtype=torch.float64)
        layers[name] = LayerFactors(a=a, b=b)
        targets[name] = scaling * b @ a + TARGET_OFFSET[name] * torch.randn(
            size, size, generator=gen, dtype=torch.float64
        )
    return layers, targets


def test_the_secant_sums_give_the_curvature_exactly_without_noise() -> None:
    """Noise-free steps on a quadratic: sum <g_{k+1} - g_k, -g_k> / sum ||dW_k||^2 / eta is lambda."""
    gen = torch.Generator().manual_seed(3)
    curvatures = {"flat": 0.2, "sharp": 5.0}
    layers, targets = _one_layer(gen, curvatures, 24, 4, 2.0)
    federation = Federation(layers, targets, curvatures, 2.0, 0.05, 0.0, (1.0,), 4)
    _, released = federated_round(federation, gen)
    for name, lam in curvatures.items():
        estimate = pooled_curvature(released, name, Factor.B, layers[name].b.numel())
        assert estimate is not None
        assert estimate.value == pytest.approx(lam, rel=1e-9)
        assert estimate.variance == 0.0
        assert pooled_curvature(released, name, Factor.A, layers[name].a.numel()) is None


def _pooled_step_sq(released: list[tuple[float, SiloStatistics]], name: str) -> float:
    """sum_i q_i step_sq_i of layer `name`'s B."""
    total = sum(weight for weight, _ in released)
    pooled = 0.0
    for weight, silo in released:
        secants = silo.layers[name][Factor.B].curvature
        assert secants is not None
        pooled += weight / total * secants.step_sq
    return pooled


def test_the_secant_estimate_is_unbiased_within_its_standard_error_once_the_noise_bias_is_removed() -> None:
    """Noise far above the signal, layers a decade apart in curvature: over many rounds the estimates
    average to the true lambda within three Monte Carlo errors, their spread matches the standard error
    the coordinator computes, and the noise bias removed is many hundred Monte Carlo errors (so this
    test fails if the correction is dropped)."""
    gen = torch.Generator().manual_seed(11)
    curvatures = {"flat": 0.3, "sharp": 3.0}
    layers, targets = _one_layer(gen, curvatures, UNBIASED_SIZE, UNBIASED_RANK, 2.0)
    federation = Federation(layers, targets, curvatures, 2.0, 0.5, UNBIASED_NOISE, (1.0, 2.0, 3.0), 5)
    estimates: dict[str, list[tuple[float, float]]] = {name: [] for name in curvatures}
    bias: dict[str, list[float]] = {name: [] for name in curvatures}
    for _ in range(UNBIASED_ROUNDS):
        _, released = federated_round(federation, gen)
        for name in curvatures:
            size = layers[name].b.numel()
            found = pooled_curvature(released, name, Factor.B, size)
            assert found is not None
            estimates[name].append((found.value, found.variance))
            # what the correction removed: sum_i q_i K v size / sum_i q_i step_sq
            bias[name].append(
                (federation.steps - 1) * federation.noise * size / _pooled_step_sq(released, name)
            )
    for name, lam in curvatures.items():
        values = torch.tensor([value for value, _ in estimates[name]], dtype=torch.float64)
        reported = torch.tensor([variance for _, variance in estimates[name]], dtype=torch.float64)
        mc_error = float(values.std()) / math.sqrt(len(values))
        assert abs(float(values.mean()) - lam) < 3 * mc_error, (name, float(values.mean()), mc_error)
        assert float(reported.mean()) / float(values.var()) == pytest.approx(1.0, abs=CALIBRATION_TOLERANCE)
        assert sum(bias[name]) / len(bias[name]) > MIN_BIAS_ERRORS * mc_error, name


def test_at_the_sst2_regimes_noise_the_estimate_is_used_and_right() -> None:
    """SST-2's DP regime (docs/results.md): sigma 0.83, factor clip 0.1 in two clip groups, batch 512,
    lr 4, s = 2, three local steps, five silos of SST-2's sizes, 384-wide layers at rank 8 with A as PEFT
    initialises it and B = 0, an isotropic gradient of SST-2's clipped size. Layers a decade apart
    around the constant 0.05. Over a six-round run the estimate is used in at least half of the
    layer-rounds, and each layer's final smoothed estimate lies within three standard errors of its true
    curvature (the noise bias it removes is several times the signal: without the correction it fails)."""
    gen = torch.Generator().manual_seed(5)
    settings = ScoreSettings(curvature=CurvatureSource.ESTIMATED)
    scale = settings.curvature_scale
    curvatures = {f"layer{i}": scale * math.sqrt(10.0) ** (1 if i % 2 else -1) for i in range(SST2_LAYERS)}
    layers, targets = {}, {}
    for name, lam in curvatures.items():
        bound = 1 / math.sqrt(SST2_WIDTH)
        a = (2 * torch.rand(SST2_RANK, SST2_WIDTH, generator=gen, dtype=torch.float64) - 1) * bound
        layers[name] = LayerFactors(a=a, b=torch.zeros(SST2_WIDTH, SST2_RANK, dtype=torch.float64))
        offset = math.sqrt(SST2_GRADIENT_VARIANCE) / lam
        targets[name] = offset * torch.randn(SST2_WIDTH, SST2_WIDTH, generator=gen, dtype=torch.float64)
    noise = (SST2_SIGMA * SST2_CLIP * math.sqrt(SST2_CLIP_GROUPS) / SST2_BATCH) ** 2
    federation = Federation(layers, targets, curvatures, SST2_SCALING, SST2_LR, noise, SST2_SILOS, SST2_STEPS)
    tracker = CurvatureTracker(settings)
    used = []
    for _ in range(SST2_ROUNDS):
        state, released = federated_round(federation, gen)
        tracker.observe(released, {(name, Factor.B): layers[name].b.numel() for name in layers})
        used += [tracker.uses(state.layer_names)[name][Factor.B].estimated for name in layers]
        federation = Federation(
            dict(state.layers), targets, curvatures, SST2_SCALING, SST2_LR, noise, SST2_SILOS, SST2_STEPS
        )
    assert sum(used) / len(used) >= 0.5, used
    for name, lam in curvatures.items():
        smoothed = tracker.smoothed[name, Factor.B]
        assert abs(smoothed.mean - lam) < 3 * math.sqrt(smoothed.variance), (name, lam, smoothed)


# ---------------------------------------------------------------- choosing the factor


def selection_agreement(spread: float) -> dict[CurvatureSource, int]:
    """Per curvature source: of the layers with a clear better factor over SELECTION_DRAWS draws, how many
    the score (argmax, the `norm` prior at the true GAMMA) picks right after one round of training B."""
    hits = dict.fromkeys(CurvatureSource, 0)
    for seed in range(SELECTION_DRAWS):
        federation = selection_draw(seed, spread)
        state, released = federated_round(federation, torch.Generator().manual_seed(SEED_OFFSET + seed))
        better = better_factors(federation, state)
        sizes = {(n, f): state.layers[n].factor(f).numel() for n in state.layer_names for f in Factor}
        for source in CurvatureSource:
            settings = ScoreSettings(
                estimator="norm",
                curvature=source,
                curvature_scale=CURVATURE_SCALE,
                prior_gradient_scale=GAMMA,
            )
            tracker = CurvatureTracker(settings)
            tracker.observe(released, sizes)
            scores = make_estimator(settings, federation.scaling).scores(
                state,
                released,
                federation.lr,
                trained=dict.fromkeys(state.layer_names, Factor.B),
                curvature=tracker.values(state.layer_names),
            )
            for name, best in better.items():
                chosen = Factor.A if scores[name, Factor.A].value > scores[name, Factor.B].value else Factor.B
                hits[source] += chosen is best
    return hits


def test_with_curvatures_a_decade_apart_the_estimate_picks_the_better_factor_more_often() -> None:
    hits = selection_agreement(spread=10.0)
    assert hits[CurvatureSource.ESTIMATED] > hits[CurvatureSource.CONSTANT], hits


def test_with_equal_curvatures_the_estimate_picks_the_better_factor_as_often() -> None:
    hits = selection_agreement(spread=1.0)
    assert hits[CurvatureSource.ESTIMATED] >= hits[CurvatureSource.CONSTANT], hits


# ---------------------------------------------------------------- which curvature the score uses


def tracker_with(means_and_errors: dict[str, tuple[float, float]]) -> CurvatureTracker:
    """An `estimated` tracker whose B estimates are these (mean, standard error) pairs, per layer."""
    tracker = CurvatureTracker(ScoreSettings(curvature=CurvatureSource.ESTIMATED))
    tracker.smoothed = {
        (name, Factor.B): Smoothed(mean, error**2) for name, (mean, error) in means_and_errors.items()
    }
    return tracker


def test_an_estimate_is_used_where_it_contradicts_the_constant_floored_at_its_resolution() -> None:
    """Far above the constant: used as measured. Far below it but not above zero (the SST-2 query
    projections): used, read as its resolution z standard errors, never zero or negative. Within z
    standard errors of the constant: the constant. A's score borrows its layer's B estimate."""
    settings = ScoreSettings()
    constant, z = settings.curvature_scale, settings.z
    error = constant / 100
    tracker = tracker_with(
        {
            "sharp": (10 * constant, error),
            "flat": (-error / 2, error),
            "negative": (-5 * error, error),
            "near": (constant + error, error),
        }
    )
    uses = tracker.uses(["sharp", "flat", "negative", "near", "untrained"])
    expected = {
        "sharp": 10 * constant,
        "flat": z * error,
        "negative": z * error,
        "near": constant,
        "untrained": constant,
    }
    for name, value in expected.items():
        for factor in Factor:
            assert uses[name][factor].value == pytest.approx(value), (name, factor)
            assert uses[name][factor].estimated == (name in {"sharp", "flat", "negative"}), (name, factor)
