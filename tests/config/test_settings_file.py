"""Settings dataclasses read from and written to TOML tables by field name, both ways the same."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from aslora_cli.federation_files import toml_text
from aslora_coordinator.config import RoundSettings, SecuritySettings
from aslora_core.config import (
    AccountantKind,
    ClippingMode,
    ComputeSettings,
    ConfigError,
    CurvatureSource,
    LoraSettings,
    LrSchedule,
    PrivacySettings,
    RecordFields,
    ScoreSettings,
    TrainingSettings,
)
from aslora_rpc.config_file import Table
from aslora_rpc.settings_file import TomlValue, read_settings, settings_table
from aslora_silo.config import LocalData

SAMPLES = [
    TrainingSettings(local_steps=3, batch_size=32, lr=0.1, head_lr=0.5, lr_schedule=LrSchedule.COSINE),
    PrivacySettings(
        clip_norm=0.2,
        head_clip_norm=0.7,
        delta=1e-6,
        target_epsilon=3.0,
        accountant=AccountantKind.PRV,
        clipping=ClippingMode.JOINT,
        test_mode=True,
    ),
    LoraSettings(rank=4, alpha=8, target_modules=("query", "value"), dropout=0.1),
    ComputeSettings(device="cuda", physical_batch_size=128, max_length=96),
    RecordFields(text_column="text", text_pair_column="pair", label_column="y"),
    RoundSettings(min_silos=2, registration_timeout_seconds=30.0),
    SecuritySettings(allowed_silos=("a", "b"), max_update_norm_ratio=3.0),
    ScoreSettings(estimator="hybrid", curvature=CurvatureSource.ESTIMATED, curvature_scale=0.02),
]


def _table(values: dict[str, TomlValue], tmp_path: Path) -> Table:
    path = tmp_path / "settings.toml"
    path.write_text(toml_text({"settings": values}))
    return Table.load(path).table("settings")


@pytest.mark.parametrize("settings", SAMPLES, ids=lambda s: type(s).__name__)
def test_what_is_written_reads_back_the_same(settings: object, tmp_path: Path) -> None:
    table = _table(settings_table(settings), tmp_path)
    assert read_settings(table, type(settings)) == settings
    table.finish()


def test_an_absent_key_keeps_the_default_or_the_given_defaults(tmp_path: Path) -> None:
    table = _table({"lr": 0.25}, tmp_path)
    assert read_settings(table, TrainingSettings) == TrainingSettings(lr=0.25)
    silo_defaults = ComputeSettings(max_length=128)
    assert read_settings(_table({}, tmp_path), ComputeSettings, defaults=silo_defaults) == silo_defaults


def test_a_wrong_type_or_value_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="local_steps must be an integer"):
        read_settings(_table({"local_steps": 2.5}, tmp_path), TrainingSettings)
    with pytest.raises(ConfigError, match="optimizer = 'adamw': choose from sgd, adam"):
        read_settings(_table({"optimizer": "adamw"}, tmp_path), TrainingSettings)
    with pytest.raises(ConfigError, match="learning rate must be positive"):
        read_settings(_table({"lr": -1.0}, tmp_path), TrainingSettings)
    with pytest.raises(ConfigError, match="curvature must be a string"):  # the number is curvature_scale now
        read_settings(_table({"curvature": 0.05}, tmp_path), ScoreSettings)


def test_a_required_field_is_required_and_a_given_one_is_not_read(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="train_path is required"):
        read_settings(_table({}, tmp_path), LocalData)
    fields = RecordFields(label_column="y")
    table = _table({"train_path": "train.tsv"}, tmp_path)
    read = read_settings(table, LocalData, fields=fields)
    # A relative path names a file beside the config file.
    assert read == LocalData(train_path=tmp_path / "train.tsv", fields=fields)


def test_a_written_table_is_toml_and_leaves_out_unset_optionals() -> None:
    written = settings_table(TrainingSettings())
    assert "head_lr" not in written
    assert tomllib.loads(toml_text({"training": written}))["training"] == written


@dataclass(frozen=True)
class _Unsupported:
    mapping: dict[str, int]


def test_a_field_type_without_a_toml_form_is_a_programming_error(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="no TOML reading"):
        read_settings(_table({"mapping": "x"}, tmp_path), _Unsupported)
