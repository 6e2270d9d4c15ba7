"""A full round of four silos over the library: the unmasked sum decodes to the plain weighted mean."""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from pathlib import Path

import pytest
import torch

from aslora_core.aggregation import aggregate
from aslora_core.aggregation_rule import AggregationRule
from aslora_core.factors import SiloUpdate
from aslora_rpc.secure_aggregation.decoding import DecodedMean, decode_mean
from aslora_rpc.secure_aggregation.errors import TooFewSurvivorsError
from aslora_rpc.secure_aggregation.fixed_point import RingCodec
from aslora_rpc.secure_aggregation.messages import UnmaskRequest
from aslora_rpc.secure_aggregation.unmasking import unmask
from tests.secure_aggregation.federation import (
    SILOS,
    WEIGHTS,
    Pki,
    collect,
    global_state,
    make_pki,
    round_setup,
    selection,
    share_and_relay,
    start_round,
    upload,
)

FLOAT32_RELATIVE = 2.0**-24
"""The decoded mean is returned in the adapter's float32: one rounding of at most this, relative."""


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """Certificates made once for the module, by the project's own CA code."""
    return make_pki(tmp_path_factory.mktemp("pki"))


def _close(decoded: torch.Tensor, exact: torch.Tensor, bound: float) -> None:
    """Every coordinate within the fixed-point bound plus the final float32 rounding."""
    slack = bound + FLOAT32_RELATIVE * exact.abs()
    assert bool(((decoded.double() - exact).abs() <= slack).all())


def _weighted_mean(values: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """The float64 weighted mean of each silo's `values`, with the silos' public weights."""
    total = math.fsum(WEIGHTS[s] for s in values)
    return torch.stack([WEIGHTS[s] * v.double() for s, v in values.items()]).sum(dim=0) / total


def _check_mean(
    decoded: DecodedMean, updates: Mapping[str, SiloUpdate], codec: RingCodec, silos: Collection[str]
) -> None:
    """The decoded factors, head and statistics equal the float64 weighted mean of `silos`' updates."""
    assert decoded.survivors == frozenset(silos)
    assert decoded.total_weight == math.fsum(WEIGHTS[s] for s in silos)
    bound = codec.error_bound(len(silos), decoded.total_weight)
    for name, factors in decoded.factors.items():
        for factor, tensor in factors.items():
            _close(tensor, _weighted_mean({s: updates[s].factors[name][factor] for s in silos}), bound)
    for key, tensor in decoded.head.items():
        _close(tensor, _weighted_mean({s: updates[s].head[key] for s in silos}), bound)
    for layer, pooled in decoded.statistics.items():
        for factor, entry in pooled.items():
            released = {s: updates[s].statistics for s in silos}
            values = {
                s: torch.tensor(
                    [r.layers[layer][factor].grad_sq, r.layers[layer][factor].proj_sq], dtype=torch.float64
                )
                for s, r in released.items()
                if r is not None
            }
            assert len(values) == len(silos)
            _close(
                torch.tensor([entry.grad_sq, entry.proj_sq], dtype=torch.float64),
                _weighted_mean(values),
                bound,
            )


def test_four_silos_decode_to_the_plain_weighted_mean(pki: Pki, tmp_path: Path) -> None:
    """All four report: the decoded mean is the exact weighted mean within the stated error, and the
    plain aggregation's new adapter agrees with it."""
    state, layout, codec, updates = round_setup()
    round_ = start_round(pki, tmp_path)
    share_and_relay(round_)
    upload(round_, layout, codec, updates)
    decoded = decode_mean(collect(round_), layout, codec, {s: WEIGHTS[s] for s in SILOS})
    _check_mean(decoded, updates, codec, SILOS)
    plain = aggregate(global_state(), list(updates.values()), selection(state), AggregationRule.EXACT).state
    for name, factors in decoded.factors.items():
        for factor, tensor in factors.items():
            torch.testing.assert_close(tensor, plain.layers[name].factor(factor))
    for key, tensor in decoded.head.items():
        torch.testing.assert_close(tensor, plain.head[key])


def test_a_silo_dropping_after_sharing_is_excluded_and_its_masks_removed(pki: Pki, tmp_path: Path) -> None:
    """silo-c shares its keys, then never uploads: the sum of the other three is recovered from their
    shares of silo-c's mask key, and silo-c's update is not in it."""
    _, layout, codec, updates = round_setup()
    round_ = start_round(pki, tmp_path)
    share_and_relay(round_)
    upload(round_, layout, codec, updates, dropped={"silo-c"})
    survivors = ("silo-a", "silo-b", "silo-d")
    decoded = decode_mean(collect(round_), layout, codec, {s: WEIGHTS[s] for s in survivors})
    _check_mean(decoded, updates, codec, survivors)


def test_a_silo_dropping_before_sharing_is_excluded_cleanly(pki: Pki, tmp_path: Path) -> None:
    """silo-b advertises keys but shares nothing: no one masks against it, no key shares are needed."""
    _, layout, codec, updates = round_setup()
    round_ = start_round(pki, tmp_path)
    share_and_relay(round_, dropped_before_sharing={"silo-b"})
    upload(round_, layout, codec, updates)
    survivors = ("silo-a", "silo-c", "silo-d")
    assert set(round_.masked) == set(survivors)
    unmasked = collect(round_)
    decoded = decode_mean(unmasked, layout, codec, {s: WEIGHTS[s] for s in survivors})
    _check_mean(decoded, updates, codec, survivors)


def test_fewer_survivors_than_the_threshold_fail_the_round(pki: Pki, tmp_path: Path) -> None:
    """Threshold 3 of 4: with two uploads the coordinator's unmasking fails, and so does a silo's release."""
    _, layout, codec, updates = round_setup()
    round_ = start_round(pki, tmp_path)
    assert round_.context.threshold == 3
    share_and_relay(round_)
    upload(round_, layout, codec, updates, dropped={"silo-b", "silo-c"})
    with pytest.raises(TooFewSurvivorsError, match="threshold is 3"):
        unmask(round_.context, round_.keys_seen(), round_.masked, [])
    request = UnmaskRequest(task_id=round_.context.task_id, survivors=frozenset(round_.masked))
    with pytest.raises(TooFewSurvivorsError, match="threshold is 3"):
        round_.participants["silo-a"].release(request)


def test_fewer_silos_answering_with_shares_than_the_threshold_fail(pki: Pki, tmp_path: Path) -> None:
    """Three uploads but only two releases: not enough shares to remove any self mask."""
    _, layout, codec, updates = round_setup()
    round_ = start_round(pki, tmp_path)
    share_and_relay(round_)
    upload(round_, layout, codec, updates, dropped={"silo-d"})
    request = UnmaskRequest(task_id=round_.context.task_id, survivors=frozenset(round_.masked))
    releases = [round_.participants[s].release(request) for s in ("silo-a", "silo-b")]
    with pytest.raises(TooFewSurvivorsError, match="2 silos released shares"):
        unmask(round_.context, round_.keys_seen(), round_.masked, releases)
