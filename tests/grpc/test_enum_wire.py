"""The protocol's enums and their protobuf values: every member goes there and back, an unknown value is
a WireError, and a map that sends two members to one value or misses a member is refused when it is built."""

from __future__ import annotations

from enum import Enum

import pytest

from aslora_coordinator.admin_wire import EXPORT_FORMATS
from aslora_rpc.enum_wire import EnumWire, WireError
from aslora_rpc.wire import FACTOR_CHOICES, RUN_STATES

UNUSED_VALUE = 999
"""No protobuf enum of the protocol has this value."""


@pytest.mark.parametrize("mapping", [RUN_STATES, FACTOR_CHOICES, EXPORT_FORMATS], ids=lambda m: m.what)
def test_every_member_round_trips_and_an_unknown_value_is_refused(mapping: EnumWire[Enum, int]) -> None:
    members = list(mapping.members)
    assert [mapping.from_proto(mapping.to_proto(member)) for member in members] == members
    assert len({mapping.to_proto(member) for member in members}) == len(members)
    with pytest.raises(WireError, match=f"unknown {mapping.what} {UNUSED_VALUE}"):
        mapping.from_proto(UNUSED_VALUE)


def test_a_map_that_shares_or_misses_a_value_is_refused() -> None:
    class Colour(Enum):
        RED = "red"
        GREEN = "green"

    with pytest.raises(ValueError, match="share one protobuf value"):
        EnumWire("colour", {Colour.RED: 1, Colour.GREEN: 1})
    with pytest.raises(ValueError, match="no protobuf value for GREEN"):
        EnumWire("colour", {Colour.RED: 1})
