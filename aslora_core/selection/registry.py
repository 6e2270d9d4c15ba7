"""Selection policies by name, and the one factory that builds them from a run's settings."""

from __future__ import annotations

from collections.abc import Sequence

from aslora_core.config import ScoreSettings
from aslora_core.policy_traits import policy_traits
from aslora_core.selection.aslora import AsloraPolicy
from aslora_core.selection.base import SelectionPolicy
from aslora_core.selection.fedit import FeditPolicy
from aslora_core.selection.ffa import FfaPolicy
from aslora_core.selection.fixed_split import FixedSplitPolicy
from aslora_core.selection.lalora import LaloraPolicy
from aslora_core.selection.random_choice import RandomPolicy
from aslora_core.selection.rolora import RoloraPolicy
from aslora_core.selection.svd import SvdPolicy

POLICY_CLASSES: tuple[type[SelectionPolicy], ...] = (
    AsloraPolicy,
    FfaPolicy,
    RoloraPolicy,
    FeditPolicy,
    LaloraPolicy,
    SvdPolicy,
    RandomPolicy,
    FixedSplitPolicy,
)
"""One class per entry of `aslora_core.policy_traits.POLICY_TRAITS`, each carrying that entry."""
_POLICIES: dict[str, type[SelectionPolicy]] = {cls.traits.name: cls for cls in POLICY_CLASSES}


def make_policy(
    name: str, layer_names: Sequence[str], score: ScoreSettings, seed: int, scaling: float
) -> SelectionPolicy:
    """The policy called `name` for the given layers; UnknownPolicyError (a ValueError) for an unknown
    name."""
    return _POLICIES[policy_traits(name).name].create(layer_names, score, seed, scaling)
