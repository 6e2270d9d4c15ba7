"""A score estimator that reads both factors' gradients needs joint clipping: one check, in the simulation's
settings and in every coordinator config."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from aslora_core.config import (
    ClippingMode,
    ConfigError,
    FederationSettings,
    PrivacySettings,
    ScoreSettings,
    SimulationSettings,
    check_score_clipping,
)
from tests.grpc.helpers import coordinator_tables, load_config, load_run_config

GRADIENT_READING = ("gradient", "hybrid")
REFUSAL = r'\[federation.score\] estimator = "{}" .* \[privacy\] clipping = "joint"'


def _federation(estimator: str, policy: str = "aslora") -> FederationSettings:
    return FederationSettings(policy=policy, score=ScoreSettings(estimator=estimator))


def _privacy(clipping: ClippingMode) -> PrivacySettings:
    return PrivacySettings(target_epsilon=3.0, clipping=clipping)


@pytest.mark.parametrize("estimator", GRADIENT_READING)
def test_a_gradient_reading_estimator_is_refused_without_joint_clipping(estimator: str) -> None:
    with pytest.raises(ConfigError, match=REFUSAL.format(estimator)):
        check_score_clipping(_federation(estimator), _privacy(ClippingMode.TRAINED))
    check_score_clipping(_federation(estimator), _privacy(ClippingMode.JOINT))


def test_the_norm_estimator_and_other_policies_need_no_joint_clipping() -> None:
    check_score_clipping(_federation("norm"), _privacy(ClippingMode.TRAINED))
    check_score_clipping(_federation("hybrid", policy="ffa"), _privacy(ClippingMode.TRAINED))


@pytest.mark.parametrize("estimator", GRADIENT_READING)
def test_simulation_settings_refuse_it(estimator: str) -> None:
    federation = _federation(estimator)
    with pytest.raises(ConfigError, match=REFUSAL.format(estimator)):
        SimulationSettings(federation=federation, privacy=_privacy(ClippingMode.TRAINED))
    SimulationSettings(federation=federation, privacy=_privacy(ClippingMode.JOINT))


@pytest.mark.parametrize("estimator", GRADIENT_READING)
def test_a_coordinator_config_refuses_it(estimator: str, tmp_path: Path) -> None:
    """Refused by the loader, with the default (trained) clipping, and by RunConfig itself."""
    tables = coordinator_tables(tmp_path / "no-model")
    tables["federation.score"] = {"estimator": estimator}
    with pytest.raises(ConfigError, match=REFUSAL.format(estimator)):
        load_config(tmp_path / "trained.toml", tables)
    tables["privacy"] = {**tables["privacy"], "clipping": "joint"}
    config = load_run_config(tmp_path / "joint.toml", tables)
    assert config.federation.score.estimator == estimator
    with pytest.raises(ConfigError, match=REFUSAL.format(estimator)):
        dataclasses.replace(
            config, privacy=dataclasses.replace(config.privacy, clipping=ClippingMode.TRAINED)
        )
