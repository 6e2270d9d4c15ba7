"""[federation] secure_aggregation is validated when the settings are read: what needs individual updates
(a non-linear aggregation, a robust combiner, a per-update norm bound) is refused with the reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from aslora_core.config import Combiner, ConfigError, FederationSettings
from aslora_core.policy_traits import POLICY_NAMES, policy_traits
from tests.grpc.helpers import coordinator_tables, load_config


@pytest.mark.parametrize("policy", POLICY_NAMES)
def test_only_policies_with_linear_aggregation_take_secure_aggregation(policy: str) -> None:
    """Every linear policy is accepted; SVD, which re-factors a mean of products, is refused."""
    if policy_traits(policy).linear:
        assert FederationSettings(policy=policy, secure_aggregation=True).secure_aggregation
    else:
        with pytest.raises(ConfigError, match=f"the {policy} policy's aggregation .* is not linear"):
            FederationSettings(policy=policy, secure_aggregation=True)


@pytest.mark.parametrize("combiner", [Combiner.MEDIAN, Combiner.TRIMMED_MEAN])
def test_robust_combiners_are_refused(combiner: Combiner) -> None:
    """A median or trimmed mean needs each silo's update, which secure aggregation hides."""
    with pytest.raises(ConfigError, match=f"the {combiner.value} combiner needs"):
        FederationSettings(combiner=combiner, secure_aggregation=True)


@pytest.mark.parametrize(
    ("keys", "message"), [({"policy": "svd"}, "not linear"), ({"combiner": "median"}, "median")]
)
def test_the_coordinators_config_file_refuses_what_cannot_work(
    tiny_model_dir: Path, tmp_path: Path, keys: dict[str, str], message: str
) -> None:
    """The same refusals come from the coordinator's config file."""
    tables = coordinator_tables(tiny_model_dir, secure_aggregation=True, min_silos=2, **keys)
    with pytest.raises(ConfigError, match=message):
        load_config(tmp_path / "c.toml", tables)


def test_valid_settings_load(tiny_model_dir: Path, tmp_path: Path) -> None:
    """A linear policy with the mean combiner runs with secure aggregation."""
    tables = coordinator_tables(tiny_model_dir, secure_aggregation=True, min_silos=2)
    run = load_config(tmp_path / "c.toml", tables).run
    assert run is not None and run.federation.secure_aggregation


def test_a_secure_run_that_could_sum_one_silo_is_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    """With min_silos = 1 a round could hold one silo, whose sum is its own update."""
    tables = coordinator_tables(tiny_model_dir, secure_aggregation=True, min_silos=1)
    with pytest.raises(ConfigError, match="needs min_silos >= 2"):
        load_config(tmp_path / "c.toml", tables)


def test_an_explicit_update_norm_bound_is_refused_with_secure_aggregation(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """The bound is checked per update, which a secure run never shows the coordinator."""
    tables = coordinator_tables(tiny_model_dir, secure_aggregation=True, min_silos=2)
    tables["security"] = {"max_update_norm_ratio": 10.0}
    with pytest.raises(ConfigError, match="max_update_norm_ratio = 10 bounds each update"):
        load_config(tmp_path / "c.toml", tables)
