"""What the coordinator receives from a silo is uniform over Z_{2^64} and unlike the silo's plain encoding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.stats import chi2

from aslora_rpc.secure_aggregation.masks import RingVector
from tests.secure_aggregation.federation import make_pki, round_setup, share_and_relay, start_round, upload

BINS = 256
TOP_BYTE_SHIFT = np.uint64(56)
FALSE_ALARM = 1e-6
"""The chance that a truly uniform vector fails the test: the masks come from the OS CSPRNG, unseeded."""


def chi_square(words: RingVector) -> float:
    """Pearson's statistic of the top byte of each element against 256 equally likely values."""
    counts = np.bincount((words >> TOP_BYTE_SHIFT).astype(np.int64), minlength=BINS)
    expected = words.shape[0] / BINS
    return float(((counts - expected) ** 2 / expected).sum())


def test_a_masked_update_is_uniform_and_differs_from_the_plain_encoding(tmp_path: Path) -> None:
    """The top byte of every masked value is uniform (chi-square, 255 degrees of freedom), while the plain
    encoding of the same update fails the same test by far, and no masked value equals its plain one
    more often than chance."""
    _, layout, codec, updates = round_setup()
    round_ = start_round(make_pki(tmp_path / "pki"), tmp_path / "state")
    share_and_relay(round_)
    upload(round_, layout, codec, updates)
    critical = chi2.ppf(1.0 - FALSE_ALARM, BINS - 1)
    assert layout.length >= 20 * BINS
    for silo, masked in round_.masked.items():
        plain = codec.encode(updates[silo], layout)
        assert chi_square(masked) < critical
        assert chi_square(plain) > critical
        assert int(np.count_nonzero(masked == plain)) <= 1
