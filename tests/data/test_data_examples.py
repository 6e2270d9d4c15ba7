"""Tests for the in-memory labelled-text containers."""

from __future__ import annotations

import numpy as np
import pytest

from aslora_core.data import DataError, LabelledTexts, TextExample


def _data() -> LabelledTexts:
    examples = (TextExample("a", None, 0), TextExample("b", None, 2), TextExample("c", None, 1))
    return LabelledTexts(examples, ("x", "y", "z"))


def test_labels_and_length() -> None:
    data = _data()
    assert len(data) == 3
    assert data.num_labels == 3
    assert data.labels.dtype == np.int64
    assert data.labels.tolist() == [0, 2, 1]
    assert not data.has_pairs


def test_subset_keeps_order_and_names() -> None:
    data = _data()
    picked = data.subset(np.array([2, 0]))
    assert [e.text for e in picked.examples] == ["c", "a"]
    assert picked.label_names == data.label_names
    with pytest.raises(IndexError):
        data.subset([3])
    with pytest.raises(IndexError):
        data.subset([-1])


def test_label_out_of_range_is_rejected() -> None:
    with pytest.raises(DataError):
        LabelledTexts((TextExample("a", None, 2),), ("x", "y"))
    with pytest.raises(DataError):
        LabelledTexts((), ("x", "x"))
