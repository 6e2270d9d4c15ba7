"""A silo may disclose its dataset size only coarsely: it trains on a fixed subset of a rounded size."""

from __future__ import annotations

from pathlib import Path

import pytest

from aslora_core.config import ConfigError, TaskName
from aslora_core.data import LabelledTexts
from aslora_silo.config import LocalData
from aslora_silo.workspace import load_records
from tests.grpc.helpers import write_tsv

RECORDS = 37
GRANULARITY = 10


def test_the_disclosed_size_is_rounded_down_and_the_subset_is_stable(tmp_path: Path) -> None:
    data = LocalData(train_path=write_tsv(tmp_path / "train.tsv", RECORDS), size_granularity=GRANULARITY)
    first = load_records(TaskName.SEQUENCE_CLASSIFICATION, data, None, tmp_path)
    again = load_records(TaskName.SEQUENCE_CLASSIFICATION, data, ("0", "1"), tmp_path)
    assert isinstance(first, LabelledTexts) and isinstance(again, LabelledTexts)
    assert len(first) == RECORDS // GRANULARITY * GRANULARITY
    assert [e.text for e in first.examples] == [e.text for e in again.examples]
    everything = load_records(
        TaskName.SEQUENCE_CLASSIFICATION, LocalData(train_path=data.train_path), None, tmp_path
    )
    assert isinstance(everything, LabelledTexts) and len(everything) == RECORDS
    assert {e.text for e in first.examples} < {e.text for e in everything.examples}


def test_fewer_records_than_the_granularity_is_an_error(tmp_path: Path) -> None:
    data = LocalData(
        train_path=write_tsv(tmp_path / "train.tsv", GRANULARITY - 1), size_granularity=GRANULARITY
    )
    with pytest.raises(
        ConfigError,
        match=rf"dataset_size_granularity = {GRANULARITY}: more than the {GRANULARITY - 1} record",
    ):
        load_records(TaskName.SEQUENCE_CLASSIFICATION, data, None, tmp_path)
