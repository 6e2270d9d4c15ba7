"""The coordinator's [security] table and the robust-aggregation keys of [federation], validated once."""

from __future__ import annotations

from pathlib import Path

import pytest

from aslora_coordinator.config import DEFAULT_MAX_UPDATE_NORM_RATIO
from aslora_core.config import Combiner, ConfigError, Weighting
from aslora_rpc.certificates import create_ca
from tests.grpc.helpers import coordinator_tables, load_config


def test_defaults_admit_every_silo_certificate_and_bound_update_norms(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    config = load_config(tmp_path / "c.toml", coordinator_tables(tiny_model_dir))
    assert config.run is not None
    assert config.service.security.allowed_silos is None
    assert config.service.security.revocation_list is None
    assert config.service.security.max_update_norm_ratio is None
    assert config.service.security.update_norm_bound == DEFAULT_MAX_UPDATE_NORM_RATIO
    assert config.run.federation.combiner is Combiner.MEAN
    assert config.run.federation.weighting is Weighting.DATASET_SIZE


def test_security_and_robust_aggregation_keys_are_read(tiny_model_dir: Path, tmp_path: Path) -> None:
    tables = coordinator_tables(
        tiny_model_dir, combiner="trimmed-mean", trim_fraction=0.25, weighting="uniform"
    )
    ca = create_ca(tmp_path / "ca")
    tables["security"] = {
        "allowed_silos": ["hospital-a", "hospital-b"],
        "revocation_list": str(ca.revoked),
        "max_update_norm_ratio": 3.5,
    }
    config = load_config(tmp_path / "c.toml", tables)
    assert config.run is not None
    assert config.service.security.allowed_silos == ("hospital-a", "hospital-b")
    assert config.service.security.revocation_list == ca.revoked
    assert config.service.security.max_update_norm_ratio == 3.5
    assert config.run.federation.combiner is Combiner.TRIMMED_MEAN
    assert config.run.federation.trim_fraction == 0.25
    assert config.run.federation.weighting is Weighting.UNIFORM


@pytest.mark.parametrize(
    ("table", "values", "message"),
    [
        ("security", {"allowed_silos": []}, "at least one silo"),
        ("security", {"max_update_norm_ratio": 0}, "must be positive"),
        ("security", {"allow": ["x"]}, "unknown key"),
        ("security", {"revocation_list": "/nonexistent/revoked.json"}, "revocation_list.*no such file"),
        ("federation", {"combiner": "mode"}, "combiner"),
        ("federation", {"trim_fraction": 0.5}, "trim_fraction"),
        ("federation", {"policy": "svd", "combiner": "median"}, "svd"),
    ],
)
def test_wrong_values_are_refused(
    tiny_model_dir: Path, tmp_path: Path, table: str, values: dict[str, object], message: str
) -> None:
    tables = coordinator_tables(tiny_model_dir)
    tables[table] = {**tables.get(table, {}), **values}
    with pytest.raises(ConfigError, match=message):
        load_config(tmp_path / "c.toml", tables)
