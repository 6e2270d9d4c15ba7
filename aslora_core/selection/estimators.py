"""The `norm`, `gradient` and `hybrid` estimators of the AS-LoRA score behind one interface."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import ClassVar

from aslora_core.config import ScoreSettings
from aslora_core.factor_choice import Factor
from aslora_core.factors import AdapterState, SiloStatistics
from aslora_core.selection.evidence import pooled_evidence
from aslora_core.selection.hybrid import shrink_toward_prior
from aslora_core.selection.score import (
    Evidence,
    PartnerGeometry,
    RoundContext,
    Score,
    factor_score,
    partner_geometry,
    prior_evidence,
)

LayerFactor = tuple[str, Factor]
Statistics = Sequence[tuple[float, SiloStatistics]]


class ScoreEstimator(ABC):
    """Scores both factors of every layer from the new global adapter and the round's statistics."""

    name: ClassVar[str]

    def __init__(self, settings: ScoreSettings, scaling: float) -> None:
        self.settings = settings
        self.scaling = scaling

    def scores(
        self,
        state: AdapterState,
        statistics: Statistics,
        lr: float,
        trained: Mapping[str, Factor],
        curvature: Mapping[LayerFactor, float] | None = None,
    ) -> dict[LayerFactor, Score]:
        """The score of training each factor of each layer next round, with its variance.

        `trained` names the factor each layer trained in the round that produced `statistics`;
        `curvature` gives lambda per layer and factor (None: the constant `curvature_scale` everywhere).
        """
        context = RoundContext.of_round(statistics, lr, self.scaling)
        geometry = {(n, f): partner_geometry(state.layers[n], f) for n in state.layer_names for f in Factor}
        lam = {
            key: self.settings.curvature_scale if curvature is None else curvature[key] for key in geometry
        }
        recoil = {
            key: lr * lam[key] * self.scaling**2 if trained.get(key[0]) is key[1] else 0.0 for key in geometry
        }
        evidence = self.evidence(geometry, statistics, recoil)
        return {key: factor_score(evidence[key], geometry[key], context, lam[key]) for key in geometry}

    @abstractmethod
    def evidence(
        self,
        geometry: Mapping[LayerFactor, PartnerGeometry],
        statistics: Statistics,
        recoil: Mapping[LayerFactor, float],
    ) -> dict[LayerFactor, Evidence]:
        """Estimates of ||g_X||^2 and of the projected gradient for every key of `geometry`.

        `recoil` is the `recoil_rate` of `pooled_evidence`: non-zero for the factors trained last round.
        """

    def _prior(self, geometry: PartnerGeometry, gamma: float) -> Evidence:
        return prior_evidence(geometry, self.scaling, gamma)


class NormEstimator(ScoreEstimator):
    """Public factors only: the isotropic-gradient prior with the configured gamma; no noise."""

    name = "norm"

    def evidence(
        self,
        geometry: Mapping[LayerFactor, PartnerGeometry],
        statistics: Statistics,
        recoil: Mapping[LayerFactor, float],
    ) -> dict[LayerFactor, Evidence]:
        """The prior for every layer and factor."""
        gamma = self.settings.prior_gradient_scale
        return {key: self._prior(g, gamma) for key, g in geometry.items()}


class GradientEstimator(ScoreEstimator):
    """The silos' cross-step statistics; the prior where a layer and factor has none."""

    name = "gradient"

    def evidence(
        self,
        geometry: Mapping[LayerFactor, PartnerGeometry],
        statistics: Statistics,
        recoil: Mapping[LayerFactor, float],
    ) -> dict[LayerFactor, Evidence]:
        """Pooled silo evidence per layer and factor."""
        gamma = self.settings.prior_gradient_scale
        result: dict[LayerFactor, Evidence] = {}
        for (name, factor), g in geometry.items():
            found = pooled_evidence(statistics, name, factor, g, recoil[name, factor])
            result[name, factor] = found if found is not None else self._prior(g, gamma)
        return result


class HybridEstimator(ScoreEstimator):
    """The silos' evidence shrunk toward the isotropic prior by empirical Bayes (see hybrid.py)."""

    name = "hybrid"

    def evidence(
        self,
        geometry: Mapping[LayerFactor, PartnerGeometry],
        statistics: Statistics,
        recoil: Mapping[LayerFactor, float],
    ) -> dict[LayerFactor, Evidence]:
        """Posterior evidence per layer and factor."""
        found = {key: pooled_evidence(statistics, *key, g, recoil[key]) for key, g in geometry.items()}
        units = {key: self._prior(g, 1.0) for key, g in geometry.items()}
        return shrink_toward_prior(found, units, self.settings.prior_gradient_scale)


ESTIMATORS: dict[str, type[ScoreEstimator]] = {
    cls.name: cls for cls in (NormEstimator, GradientEstimator, HybridEstimator)
}


def make_estimator(settings: ScoreSettings, scaling: float) -> ScoreEstimator:
    """The estimator named by `settings.estimator`."""
    try:
        return ESTIMATORS[settings.estimator](settings, scaling)
    except KeyError:
        raise ValueError(
            f"unknown score estimator {settings.estimator!r}; known: {sorted(ESTIMATORS)}"
        ) from None
