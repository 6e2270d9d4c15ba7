"""Selection policies by name, and the one factory that builds them from a run's settings."""

from __future__ import annotations

from collections.abc import Sequence

from aslora_core.config import ScoreSettings
from aslora_core.selection.aslora import AsloraPolicy
from aslora_core.selection.base import SelectionPolicy
from aslora_core.selection.fedit import FeditPolicy
from aslora_core.selection.ffa import FfaPolicy
from aslora_core.selection.fixed_split import FixedSplitPolicy
from aslora_core.selection.random_choice import RandomPolicy
from aslora_core.selection.rolora import RoloraPolicy
from aslora_core.selection.svd import SvdPolicy

_POLICIES: dict[str, type[SelectionPolicy]] = {
    cls.name: cls
    for cls in (AsloraPolicy, FfaPolicy, RoloraPolicy, FeditPolicy, SvdPolicy, RandomPolicy, FixedSplitPolicy)
}
POLICY_NAMES: tuple[str, ...] = tuple(_POLICIES)


def make_policy(
    name: str, layer_names: Sequence[str], score: ScoreSettings, seed: int, scaling: float
) -> SelectionPolicy:
    """The policy called `name` for the given layers; ValueError for an unknown name."""
    try:
        cls = _POLICIES[name]
    except KeyError:
        raise ValueError(f"unknown selection policy {name!r}; known: {', '.join(POLICY_NAMES)}") from None
    return cls.create(layer_names, score, seed, scaling)
