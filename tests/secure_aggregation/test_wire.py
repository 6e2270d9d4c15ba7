"""The secure-aggregation messages survive their protobuf forms, and malformed ones are WireErrors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aslora.v1 import federation_pb2 as pb
from aslora_core.factor_choice import Factor, FactorChoice
from aslora_rpc import secure_aggregation_wire as sa_wire
from aslora_rpc import wire
from aslora_rpc.enum_wire import WireError
from aslora_rpc.messages import SecureAggregationPlan, Task, UploadAnnouncement
from aslora_rpc.secure_aggregation.masks import keystream
from aslora_rpc.secure_aggregation.messages import UnmaskRequest
from aslora_rpc.transfer import PayloadInfo
from tests.secure_aggregation.federation import SILOS, TASK_ID, make_pki, share_and_relay, start_round

PLAN = SecureAggregationPlan(
    silos=SILOS,
    threshold=3,
    fraction_bits=24,
    round_weight=546.0,
    weight=120.0,
    statistics=(("layer.0", Factor.A), ("layer.0", Factor.B)),
)
RING_LENGTH = 1000


def _task(plan: SecureAggregationPlan | None) -> Task:
    return Task(
        task_id=TASK_ID,
        round_index=2,
        selection={"layer.0": FactorChoice.B},
        noise_multiplier=1.1,
        sample_rate=0.01,
        local_steps=3,
        adapter=PayloadInfo(size_bytes=10, sha256=bytes(32)),
        seconds_to_deadline=30.0,
        secure_aggregation=plan,
    )


def test_a_task_carries_its_secure_aggregation_plan_or_none() -> None:
    for task in (_task(PLAN), _task(None)):
        assert wire.task_from_proto(wire.task_to_proto(task)) == task


def test_a_plan_with_an_unknown_factor_is_refused() -> None:
    message = sa_wire.plan_to_proto(PLAN)
    message.statistics[0].factor = "C"
    with pytest.raises(WireError, match="unknown factor 'C'"):
        sa_wire.plan_from_proto(message)


def test_an_upload_header_says_whether_the_payload_is_masked() -> None:
    for masked in (True, False):
        announcement = UploadAnnouncement("silo-a", TASK_ID, PayloadInfo(8, bytes(32)), 0.5, masked=masked)
        assert wire.upload_header_from_proto(wire.upload_header_to_proto(announcement)) == announcement


def test_keys_sealed_shares_and_released_shares_round_trip(tmp_path: Path) -> None:
    """Real signed keys, sealed shares and a release of a round of four silos."""
    round_ = start_round(make_pki(tmp_path / "pki"), tmp_path / "state")
    share_and_relay(round_)
    for participant in round_.participants.values():
        advertisement = participant.advertisement
        assert (
            sa_wire.advertisement_from_proto(sa_wire.advertisement_to_proto(advertisement)) == advertisement
        )
    for sealed in round_.sealed["silo-a"]:
        assert sa_wire.sealed_from_proto(sa_wire.sealed_to_proto(sealed)) == sealed
    for silo, participant in round_.participants.items():
        participant.mask(np.zeros(4, dtype=np.uint64))
        round_.masked[silo] = np.zeros(4, dtype=np.uint64)
    request = UnmaskRequest(task_id=TASK_ID, survivors=frozenset(SILOS[:3]))
    assert sa_wire.unmask_request_from_proto(TASK_ID, sa_wire.unmask_request_to_proto(request)) == request
    assert sa_wire.unmask_request_from_proto(TASK_ID, sa_wire.unmask_request_to_proto(None)) is None
    release = round_.participants["silo-b"].release(request)
    assert release.mask_key and release.self_mask
    assert sa_wire.release_from_proto(sa_wire.release_to_proto(release)) == release


def test_malformed_keys_and_shares_are_refused() -> None:
    with pytest.raises(WireError, match="32 bytes"):
        sa_wire.advertisement_from_proto(
            pb.RoundKeyAdvertisement(silo="silo-a", mask_key=b"x", share_key=b"y")
        )
    short = pb.ReleaseSharesRequest(silo_id="silo-a", task_id=TASK_ID)
    short.self_mask.add(peer="silo-b", x=1, y=b"\x01")
    with pytest.raises(WireError, match="66 bytes"):
        sa_wire.release_from_proto(short)
    twice = pb.ReleaseSharesRequest(silo_id="silo-a", task_id=TASK_ID)
    for _ in range(2):
        twice.mask_key.add(peer="silo-b", x=1, y=bytes(66))
    with pytest.raises(WireError, match="two shares"):
        sa_wire.release_from_proto(twice)
    beyond = pb.ReleaseSharesRequest(silo_id="silo-a", task_id=TASK_ID)
    beyond.self_mask.add(peer="silo-b", x=0, y=bytes(66))
    with pytest.raises(WireError, match="field elements"):
        sa_wire.release_from_proto(beyond)
    with pytest.raises(WireError, match="named twice"):
        sa_wire.unmask_request_from_proto(
            TASK_ID, pb.GetUnmaskRequestResponse(ready=True, survivors=["silo-a", "silo-a"])
        )


def test_a_masked_update_travels_as_little_endian_words_of_its_exact_length() -> None:
    vector = keystream(bytes(32), RING_LENGTH)
    data = sa_wire.ring_to_bytes(vector)
    assert data[:8] == int(vector[0]).to_bytes(8, "little")
    assert np.array_equal(sa_wire.ring_from_bytes(data, RING_LENGTH), vector)
    with pytest.raises(WireError, match="holds 999 elements"):
        sa_wire.ring_from_bytes(data, RING_LENGTH - 1)
