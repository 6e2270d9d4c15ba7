"""The curvature the score measures: the silos' secant sums, noise bias removed, pooled, smoothed, tested."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aslora_core.config import CurvatureSource, ScoreSettings
from aslora_core.factor_choice import Factor
from aslora_core.factors import CurvatureStatistics, SiloStatistics
from aslora_core.selection.score import Score
from aslora_core.selection.switching import Smoothed

LayerFactor = tuple[str, Factor]
_OTHER = {Factor.A: Factor.B, Factor.B: Factor.A}


def pooled_curvature(
    statistics: Sequence[tuple[float, SiloStatistics]], layer: str, factor: Factor, size: int
) -> Score | None:
    """The silos' secant estimate of lambda for one layer and trained factor, and its variance; None when
    no silo released secants for it.

    Each silo's secant sum carries the noise of every pair's first step twice, in the gradient and in the
    step, which adds v * size per pair: removed with the noise variance the receiver published. The
    pooled estimate is the ratio of the weighted sums (weights renormalised over the silos that
    released), sum_i q_i (secant_i - K_i v_i size) / sum_i q_i step_sq_i, with K_i = steps_i - 1 pairs;
    its variance sum_i q_i^2 (v_i step_change_i + K_i v_i^2 size) / (sum_i q_i step_sq_i)^2
    (docs/algorithm.md 3.6).
    """
    found: list[tuple[float, SiloStatistics, CurvatureStatistics]] = []
    for weight, silo in statistics:
        entry = silo.layers.get(layer, {}).get(factor)
        if entry is not None and entry.curvature is not None:
            found.append((weight, silo, entry.curvature))
    total = math.fsum(weight for weight, _, _ in found)
    if not found or total <= 0:
        return None
    secant = math.fsum(w / total * (c.secant - (s.steps - 1) * s.noise_variance * size) for w, s, c in found)
    step_sq = math.fsum(w / total * c.step_sq for w, _, c in found)
    if step_sq <= 0:
        return None
    secant_var = math.fsum(
        (w / total) ** 2 * (s.noise_variance * c.step_change + (s.steps - 1) * s.noise_variance**2 * size)
        for w, s, c in found
    )
    return Score(value=secant / step_sq, variance=secant_var / step_sq**2)


@dataclass(frozen=True)
class CurvatureUse:
    """The curvature the score uses for one layer and factor, and the smoothed estimate of that factor."""

    value: float
    estimated: bool
    """Whether `value` is an estimate (this factor's, else its layer's other factor's), not the constant."""
    estimate: Smoothed | None
    """This factor's own smoothed estimate, significant or not; None before it was ever trained."""


class CurvatureTracker:
    """Smooths each layer and factor's pooled estimate over rounds and says which curvature the score uses.

    Under `curvature = "estimated"` a factor uses its own smoothed estimate when it is significant, more
    than z standard errors away from the constant `curvature_scale` (the null model), floored at its
    resolution of z standard errors (a curvature the data cannot tell from zero reads as the smallest they
    can tell); else its layer's other factor's when that one is significant (in the score's model lambda is
    a property of the loss in dW, so of the layer); else the constant. Under `constant` the estimates are
    still kept, for the results file, but never used.
    """

    def __init__(self, settings: ScoreSettings) -> None:
        self.settings = settings
        self.smoothed: dict[LayerFactor, Smoothed] = {}

    def observe(
        self, statistics: Sequence[tuple[float, SiloStatistics]], sizes: Mapping[LayerFactor, int]
    ) -> None:
        """Fold one round's pooled estimates into the EMA; a factor not trained this round keeps its past."""
        for key, size in sizes.items():
            found = pooled_curvature(statistics, *key, size)
            if found is None:
                continue
            past = self.smoothed.get(key)
            self.smoothed[key] = (
                Smoothed.first(found) if past is None else past.updated(found, self.settings.ema)
            )

    def _measured(self, key: LayerFactor) -> float | None:
        """The curvature this factor's smoothed estimate gives when it contradicts the constant, floored at
        its resolution; None when it agrees with the constant within z standard errors, or was never made."""
        smoothed = self.smoothed.get(key)
        if smoothed is None:
            return None
        resolution = self.settings.z * math.sqrt(smoothed.variance)
        if abs(smoothed.mean - self.settings.curvature_scale) <= resolution:
            return None
        return max(smoothed.mean, resolution)

    def uses(self, layer_names: Sequence[str]) -> dict[str, dict[Factor, CurvatureUse]]:
        """The curvature of every layer and factor as the score uses it now."""
        estimated = self.settings.curvature is CurvatureSource.ESTIMATED
        result: dict[str, dict[Factor, CurvatureUse]] = {}
        for name in layer_names:
            result[name] = {}
            for factor in Factor:
                measured = self._measured((name, factor))
                if measured is None:
                    measured = self._measured((name, _OTHER[factor]))
                value = self.settings.curvature_scale
                if estimated and measured is not None:
                    value = measured
                result[name][factor] = CurvatureUse(
                    value=value,
                    estimated=estimated and measured is not None,
                    estimate=self.smoothed.get((name, factor)),
                )
        return result

    def values(self, layer_names: Sequence[str]) -> dict[LayerFactor, float]:
        """The curvature the score uses for every layer and factor."""
        return {
            (name, factor): use.value
            for name, per_factor in self.uses(layer_names).items()
            for factor, use in per_factor.items()
        }

    def state_dict(self) -> dict[str, dict[str, list[float]]]:
        """Layer -> factor -> [mean, variance] of the smoothed estimates, JSON-serializable."""
        table: dict[str, dict[str, list[float]]] = {}
        for (name, factor), smoothed in sorted(self.smoothed.items()):
            table.setdefault(name, {})[factor.value] = [smoothed.mean, smoothed.variance]
        return table

    def load_state_dict(self, table: Mapping[str, Mapping[str, Sequence[float]]]) -> None:
        """Restore what `state_dict` returned."""
        self.smoothed = {
            (str(name), Factor(factor)): Smoothed(float(pair[0]), float(pair[1]))
            for name, per_factor in table.items()
            for factor, pair in per_factor.items()
        }
