"""Cross-step score statistics: unbiased ||g||^2 estimates from the noisy gradients of different steps, and
the secant sums of the steps a trained factor took (its curvature)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from aslora_core.config import PrivacySettings, TrainingSettings
from aslora_core.factor_choice import Factor
from aslora_core.factors import AdapterState, CurvatureStatistics, FactorStatistics, StatisticsNoise

MIN_STEPS_FOR_STATISTICS = 2
"""Cross-step inner products need at least two steps."""


def published_noise(
    noise_multiplier: float,
    privacy: PrivacySettings,
    training: TrainingSettings,
    num_examples: int,
    *,
    has_head: bool,
) -> StatisticsNoise:
    """The noise on a silo's released statistics from public settings alone: its sigma, the clip norm, the
    clip groups (the head clipped apart only when the adapter has a head and it trains), its expected batch
    min(b, N) and the round's local steps."""
    head_apart = has_head and training.effective_head_lr > 0
    groups = privacy.clip_groups if head_apart else 1
    expected_batch = min(training.batch_size, num_examples)
    std = noise_multiplier * privacy.clip_norm * math.sqrt(groups) / expected_batch
    return StatisticsNoise(steps=training.local_steps, noise_variance=std**2)


@dataclass
class _Running:
    total: torch.Tensor
    sum_sq: float = 0.0
    sum_proj_sq: float = 0.0
    steps: int = 0
    """The steps that released this factor's gradient: every step of the round, unless the factors
    alternate step by step."""


@dataclass
class _Secants:
    """Running secant sums of one trained factor: the latest gradient and the one before it that began the
    last closed pair of steps (zero before any pair closed: the padding of `step_change`)."""

    latest: torch.Tensor
    closed: torch.Tensor
    secant: float = 0.0
    step_sq: float = 0.0
    step_change: float = 0.0


def _projected_sq(which: Factor, grad: torch.Tensor, partner_gram: torch.Tensor) -> float:
    """||g_B A||^2 = <g_B A A^T, g_B> for B; ||B g_A||^2 = <B^T B g_A, g_A> for A."""
    if which is Factor.B:
        return float(((grad @ partner_gram) * grad).sum())
    return float(((partner_gram @ grad) * grad).sum())


def _on_host(grads: dict[tuple[str, Factor], torch.Tensor]) -> dict[tuple[str, Factor], torch.Tensor]:
    """Copies of `grads` on the CPU in float64, fetched from their device in one transfer (one wait for a
    GPU, not one per tensor); copies, since the secants keep them past the step."""
    if not grads:
        return {}
    flat = torch.cat([grad.detach().reshape(-1).to(torch.float64) for grad in grads.values()]).cpu()
    parts = flat.split([grad.numel() for grad in grads.values()])
    return {key: part.view(grad.shape) for (key, grad), part in zip(grads.items(), parts, strict=True)}


@dataclass
class CrossStepStatistics:
    """Accumulates the DP-noised mean gradients of each step for every (layer, factor) it is given.

    `trained` names the factors that stepped by -`step_size` times their released gradient (plain SGD, one
    factor per layer); for those it also sums the secants of consecutive steps. Without a step size
    (another optimizer) no secants are kept.
    """

    global_state: AdapterState
    step_size: float | None = None
    trained: frozenset[tuple[str, Factor]] = frozenset()
    _running: dict[tuple[str, Factor], _Running] = field(default_factory=dict)
    _secants: dict[tuple[str, Factor], _Secants] = field(default_factory=dict)
    _grams: dict[tuple[str, Factor], torch.Tensor] = field(default_factory=dict)
    steps: int = 0

    def _gram(self, layer: str, which: Factor) -> torch.Tensor:
        key = (layer, which)
        if key not in self._grams:
            # On the CPU in float64, as the gradients are, whatever device the global state was read on.
            factors = self.global_state.layers[layer]
            partner = (factors.a if which is Factor.B else factors.b.T).detach().to("cpu", torch.float64)
            self._grams[key] = partner @ partner.T
        return self._grams[key]

    def add_step(self, noisy_grads: dict[tuple[str, Factor], torch.Tensor]) -> None:
        """Record one step's released (clipped, noised, averaged) gradients."""
        self.steps += 1
        for key, g in _on_host(noisy_grads).items():
            running = self._running.get(key)
            if running is None:
                running = self._running[key] = _Running(total=torch.zeros_like(g))
            running.total += g
            running.steps += 1
            running.sum_sq += float((g * g).sum())
            running.sum_proj_sq += _projected_sq(key[1], g, self._gram(*key))
            if self.step_size is not None and key in self.trained:
                self._add_secant(key, g, self.step_size)

    def _add_secant(self, key: tuple[str, Factor], grad: torch.Tensor, step_size: float) -> None:
        """Close the pair (previous step, this gradient): its secant, its step in dW and its step change."""
        secants = self._secants.get(key)
        if secants is None:
            self._secants[key] = _Secants(latest=grad, closed=torch.zeros_like(grad))
            return
        previous = secants.latest
        secants.secant -= float(((grad - previous) * previous).sum())
        scaling_sq = self.global_state.scaling**2
        secants.step_sq += step_size * scaling_sq * _projected_sq(key[1], previous, self._gram(*key))
        secants.step_change += float((secants.closed - previous).square().sum())
        secants.closed, secants.latest = previous, grad

    def finish(self) -> dict[str, dict[Factor, FactorStatistics]]:
        """Mean over ordered pairs k != k' of the steps that released a factor of <g_k, g_k'> (and of the
        projected products), and the secant sums of the trained factors."""
        if self.steps < MIN_STEPS_FOR_STATISTICS:
            return {}
        result: dict[str, dict[Factor, FactorStatistics]] = {}
        for (layer, which), running in sorted(self._running.items()):
            if running.steps < MIN_STEPS_FOR_STATISTICS:
                continue
            pairs = running.steps * (running.steps - 1)
            total_sq = float((running.total * running.total).sum())
            total_proj_sq = _projected_sq(which, running.total, self._gram(layer, which))
            result.setdefault(layer, {})[which] = FactorStatistics(
                grad_sq=(total_sq - running.sum_sq) / pairs,
                proj_sq=(total_proj_sq - running.sum_proj_sq) / pairs,
                curvature=self._curvature(layer, which),
            )
        return result

    def _curvature(self, layer: str, which: Factor) -> CurvatureStatistics | None:
        secants = self._secants.get((layer, which))
        if secants is None or secants.step_sq == 0.0:
            return None
        # the last pair's first step faces the zero padding at the end
        return CurvatureStatistics(
            secant=secants.secant,
            step_sq=secants.step_sq,
            step_change=secants.step_change + float(secants.closed.square().sum()),
        )
