"""A silo's evaluation split: per-record keyed-hash membership that no other record's presence moves, a
key kept owner-only in the state folder, and held-out records never trained on."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from aslora_core.config import ConfigError, TaskName
from aslora_core.data import LabelledTexts
from aslora_silo.config import (
    DEFAULT_MIN_EVALUATION_NOISE_MULTIPLIER,
    LocalData,
    SiloPrivacy,
    load_silo_config,
)
from aslora_silo.errors import SiloError
from aslora_silo.evaluation_split import SPLIT_KEY_BYTES, SPLIT_KEY_FILE, held_out, record_contents, split_key
from aslora_silo.workspace import load_evaluation_records, load_records
from tests.grpc.helpers import write_tsv
from tests.training.helpers import small_texts

RECORDS = 200
FRACTION = 0.25
TASK = TaskName.SEQUENCE_CLASSIFICATION


def _texts(records: object) -> list[str]:
    assert isinstance(records, LabelledTexts)
    return [example.text for example in records.examples]


def test_the_key_is_created_once_owner_only(tmp_path: Path) -> None:
    key = split_key(tmp_path / "state")
    path = tmp_path / "state" / SPLIT_KEY_FILE
    assert len(key) == SPLIT_KEY_BYTES
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert split_key(tmp_path / "state") == key
    assert split_key(tmp_path / "other") != key
    path.write_bytes(b"short")
    with pytest.raises(SiloError, match="not 32 bytes"):
        split_key(tmp_path / "state")


def test_adding_or_removing_one_record_moves_no_other(tmp_path: Path) -> None:
    key = split_key(tmp_path)
    records = small_texts(RECORDS + 1)
    without_last = records.subset(range(RECORDS))
    with_all = held_out(records, key, FRACTION)
    assert list(held_out(without_last, key, FRACTION)) == list(with_all[:RECORDS])
    without_first = records.subset(range(1, RECORDS + 1))
    assert list(held_out(without_first, key, FRACTION)) == list(with_all[1:])
    assert 0.1 * RECORDS < int(with_all.sum()) < 0.4 * RECORDS


def test_membership_follows_the_record_not_its_label_numbering() -> None:
    records = small_texts(4)
    renumbered = LabelledTexts(
        examples=tuple(
            type(example)(example.text, example.text_pair, 1 - example.label) for example in records.examples
        ),
        label_names=tuple(reversed(records.label_names)),
    )
    assert record_contents(records) == record_contents(renumbered)


def test_a_file_grown_by_one_line_keeps_every_other_records_split(tmp_path: Path) -> None:
    state = tmp_path / "state"
    before = LocalData(train_path=write_tsv(tmp_path / "before.tsv", RECORDS), eval_fraction=FRACTION)
    after = LocalData(train_path=write_tsv(tmp_path / "after.tsv", RECORDS + 1), eval_fraction=FRACTION)
    train_before, train_after = (_texts(load_records(TASK, d, None, state)) for d in (before, after))
    held_before, held_after = (_texts(load_evaluation_records(TASK, d, None, state)) for d in (before, after))
    added = set(_texts(small_texts(RECORDS + 1))) - set(_texts(small_texts(RECORDS)))
    assert set(train_after) - added == set(train_before)
    assert set(held_after) - added == set(held_before)


def test_held_out_records_are_never_trained_on(tmp_path: Path) -> None:
    data = LocalData(train_path=write_tsv(tmp_path / "train.tsv", RECORDS), eval_fraction=FRACTION)
    train = _texts(load_records(TASK, data, ("0", "1"), tmp_path))
    held = _texts(load_evaluation_records(TASK, data, ("0", "1"), tmp_path))
    assert not set(train) & set(held)
    assert sorted(train + held) == sorted(_texts(small_texts(RECORDS)))


def test_an_eval_file_is_the_split_and_the_training_file_stays_whole(tmp_path: Path) -> None:
    data = LocalData(
        train_path=write_tsv(tmp_path / "train.tsv", RECORDS),
        eval_path=write_tsv(tmp_path / "e.tsv", 9, RECORDS),
    )
    assert len(load_records(TASK, data, None, tmp_path)) == RECORDS
    assert len(_texts(load_evaluation_records(TASK, data, None, tmp_path))) == 9
    assert not (tmp_path / SPLIT_KEY_FILE).exists()
    assert load_evaluation_records(TASK, LocalData(train_path=data.train_path), None, tmp_path) is None


def test_the_split_settings_are_validated(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="eval_fraction"):
        LocalData(train_path=tmp_path, eval_fraction=1.0)
    with pytest.raises(ConfigError, match="choose one"):
        LocalData(train_path=tmp_path, eval_path=tmp_path, eval_fraction=0.5)


def test_the_silo_config_reads_the_split_and_the_release_settings(tmp_path: Path) -> None:
    path = tmp_path / "silo.toml"
    path.write_text(
        f'model_path = "{tmp_path}"\n[silo]\nname = "silo-a"\n[coordinator]\naddress = "127.0.0.1:7443"\n'
        f'[data]\ntrain_path = "{tmp_path / "t.tsv"}"\neval_fraction = 0.2\n'
        "[privacy]\nmax_epsilon = 4.0\nrelease_evaluation = false\nmin_evaluation_noise_multiplier = 12.5\n"
    )
    config = load_silo_config(path)
    assert (config.data.eval_fraction, config.data.eval_path) == (0.2, None)
    privacy = config.privacy
    assert (privacy.release_evaluation, privacy.min_evaluation_noise_multiplier) == (False, 12.5)
    defaults = SiloPrivacy(max_epsilon=1.0)
    assert defaults.release_evaluation
    assert defaults.min_evaluation_noise_multiplier == DEFAULT_MIN_EVALUATION_NOISE_MULTIPLIER
    with pytest.raises(ConfigError, match="min_evaluation_noise_multiplier"):
        SiloPrivacy(max_epsilon=1.0, min_evaluation_noise_multiplier=-1.0)
