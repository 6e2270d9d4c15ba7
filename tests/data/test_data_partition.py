"""Tests for IID and Dirichlet label-skew partitioning across silos."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aslora_core.data import DataError, label_skew, partition_dirichlet, partition_iid
from aslora_core.data._apportion import apportion

# Derandomized so CI sees the same cases each run; ranges keep a valid Dirichlet draw likely.
PROPERTY_SETTINGS = settings(max_examples=60, deadline=None, derandomize=True)


def _assert_disjoint_cover(parts: list[npt.NDArray[np.int64]], size: int) -> None:
    joined = np.concatenate(parts)
    assert joined.size == size
    assert np.array_equal(np.sort(joined), np.arange(size))
    assert all(part.dtype == np.int64 for part in parts)


def _labels(size: int, num_classes: int, seed: int) -> npt.NDArray[np.int64]:
    return np.random.default_rng(seed).integers(0, num_classes, size=size).astype(np.int64)


@PROPERTY_SETTINGS
@given(size=st.integers(1, 500), num_silos=st.integers(1, 20), seed=st.integers(0, 2**32 - 1))
def test_iid_properties(size: int, num_silos: int, seed: int) -> None:
    if size < num_silos:
        with pytest.raises(DataError):
            partition_iid(size, num_silos, seed)
        return
    parts = partition_iid(size, num_silos, seed)
    assert len(parts) == num_silos
    _assert_disjoint_cover(parts, size)
    sizes = [part.size for part in parts]
    assert max(sizes) - min(sizes) <= 1
    assert all(np.array_equal(a, b) for a, b in zip(parts, partition_iid(size, num_silos, seed), strict=True))


@PROPERTY_SETTINGS
@given(
    size=st.integers(50, 400),
    num_classes=st.integers(1, 6),
    num_silos=st.integers(1, 6),
    alpha=st.sampled_from([0.5, 1.0, 10.0]),
    seed=st.integers(0, 2**32 - 1),
)
def test_dirichlet_properties(size: int, num_classes: int, num_silos: int, alpha: float, seed: int) -> None:
    labels = _labels(size, num_classes, seed)
    parts = partition_dirichlet(labels, num_silos, alpha, seed)
    assert len(parts) == num_silos
    assert min(part.size for part in parts) >= 1
    _assert_disjoint_cover(parts, size)
    repeat = partition_dirichlet(labels, num_silos, alpha, seed)
    assert all(np.array_equal(a, b) for a, b in zip(parts, repeat, strict=True))


def test_dirichlet_seeds_differ() -> None:
    labels = _labels(1000, 4, seed=0)
    first = partition_dirichlet(labels, 5, 0.5, seed=1)
    second = partition_dirichlet(labels, 5, 0.5, seed=2)
    assert any(not np.array_equal(a, b) for a, b in zip(first, second, strict=True))


def test_small_alpha_is_more_skewed() -> None:
    labels = _labels(5000, 4, seed=3)
    skewed = [label_skew(labels, partition_dirichlet(labels, 5, 0.1, seed)) for seed in range(5)]
    balanced = [label_skew(labels, partition_dirichlet(labels, 5, 100.0, seed)) for seed in range(5)]
    assert np.mean(skewed) > 0.3
    assert np.mean(balanced) < 0.05
    assert min(skewed) > max(balanced)


def test_min_per_silo_is_enforced_or_reported() -> None:
    labels = _labels(200, 2, seed=4)
    parts = partition_dirichlet(labels, 4, 0.5, seed=0, min_per_silo=20)
    assert min(part.size for part in parts) >= 20
    with pytest.raises(DataError, match="attempts"):
        partition_dirichlet(labels, 4, 0.01, seed=0, min_per_silo=45)
    with pytest.raises(DataError):
        partition_dirichlet(labels, 4, 1.0, seed=0, min_per_silo=51)


def test_label_skew_bounds() -> None:
    labels = np.array([0, 0, 1, 1])
    assert label_skew(labels, [np.array([0, 2]), np.array([1, 3])]) == 0.0
    assert label_skew(labels, [np.array([0, 1]), np.array([2, 3])]) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        label_skew(labels, [np.array([0, 1, 2, 3]), np.array([], dtype=np.int64)])


@PROPERTY_SETTINGS
@given(
    shares=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=10).filter(lambda s: sum(s) > 1e-6),
    total=st.integers(0, 10_000),
)
def test_apportion_sums_exactly(shares: list[float], total: int) -> None:
    counts = apportion(shares, total)
    assert int(counts.sum()) == total
    assert np.all(counts >= 0)
    exact = np.asarray(shares) / sum(shares) * total
    assert np.all(np.abs(counts - exact) < 1.0 + 1e-9)
