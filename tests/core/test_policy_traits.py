"""Every policy carries its traits, read by name without torch or a model; an unknown name is refused
where settings are made, with the list of choices."""

from __future__ import annotations

import subprocess
import sys

import pytest

from aslora_core.aggregation_rule import AggregationRule
from aslora_core.config import ConfigError, FederationSettings, ScoreSettings
from aslora_core.policy_traits import (
    POLICY_NAMES,
    POLICY_TRAITS,
    PolicyTraits,
    UnknownPolicyError,
    policy_traits,
)
from aslora_core.selection import make_policy
from aslora_core.selection.registry import POLICY_CLASSES

EXPECTED = {
    "aslora": (True, AggregationRule.EXACT, True),
    "ffa": (False, AggregationRule.EXACT, True),
    "rolora": (False, AggregationRule.EXACT, True),
    "fedit": (False, AggregationRule.SEPARATE_MEANS, True),
    "lalora": (False, AggregationRule.SEPARATE_MEANS, True),
    "svd": (False, AggregationRule.SVD, False),
    "random": (False, AggregationRule.EXACT, True),
    "fixed-split": (False, AggregationRule.EXACT, True),
}
"""name -> (reads statistics, aggregation rule, linear aggregation)."""
JOINT_CLIPPING = {"norm": False, "gradient": True, "hybrid": True}
"""Whether a scoring policy needs joint clipping, per score estimator."""
CHOICES = "choose from aslora, ffa, rolora, fedit, lalora, svd, random, fixed-split"
LAYERS = ("l0.q", "l0.v")


def test_every_policy_has_its_traits() -> None:
    found = {name: (t.reads_statistics, t.aggregation, t.linear) for name, t in POLICY_TRAITS.items()}
    assert found == EXPECTED
    assert tuple(EXPECTED) == POLICY_NAMES


def test_every_registered_policy_class_carries_the_traits_of_its_name() -> None:
    assert {cls.traits.name: cls.traits for cls in POLICY_CLASSES} == POLICY_TRAITS
    for name in POLICY_NAMES:
        built = make_policy(name, LAYERS, ScoreSettings(), seed=0, scaling=1.0)
        assert built.traits is policy_traits(name)
        assert built.name == name


@pytest.mark.parametrize("estimator", sorted(JOINT_CLIPPING))
def test_joint_clipping_and_the_reported_score_follow_the_policy_and_its_estimator(estimator: str) -> None:
    score = ScoreSettings(estimator=estimator)
    for name, traits in POLICY_TRAITS.items():
        scores = EXPECTED[name][0]
        assert traits.needs_joint_clipping(score) is (scores and JOINT_CLIPPING[estimator]), name
        assert traits.reported_score(score) == (estimator if scores else None), name
        assert FederationSettings(policy=name, score=score).reported_score == traits.reported_score(score)


def test_an_unknown_name_is_refused_with_the_choices() -> None:
    with pytest.raises(UnknownPolicyError, match=CHOICES):
        policy_traits("asloraa")
    with pytest.raises(ConfigError, match=f"unknown policy 'asloraa'; {CHOICES}"):
        FederationSettings(policy="asloraa")
    with pytest.raises(ValueError, match=CHOICES):
        make_policy("asloraa", LAYERS, ScoreSettings(), seed=0, scaling=1.0)


@pytest.mark.parametrize("name", ["", " ffa"])
def test_traits_need_a_clean_name(name: str) -> None:
    with pytest.raises(ValueError, match="non-empty and unpadded"):
        PolicyTraits(name)


def test_settings_check_a_policy_without_importing_torch() -> None:
    """The name -> traits table is importable by any settings reader: no torch, no policy code."""
    check = (
        "import sys\n"
        "from aslora_core.config import FederationSettings\n"
        "assert FederationSettings(policy='svd').traits.aggregation.value == 'svd'\n"
        "assert 'torch' not in sys.modules, 'settings imported torch'\n"
    )
    subprocess.run([sys.executable, "-c", check], check=True)
