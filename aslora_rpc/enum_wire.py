"""One-to-one maps between the protocol's own enums and the values of their protobuf enums."""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Generic, TypeVar

Internal = TypeVar("Internal", bound=Enum)
Wire = TypeVar("Wire", bound=int)


class WireError(ValueError):
    """A message whose fields cannot be turned into the protocol's types."""


class EnumWire(Generic[Internal, Wire]):
    """Translates an enum to its protobuf enum value and back; an unknown value is a WireError."""

    def __init__(self, what: str, pairs: Mapping[Internal, Wire]) -> None:
        self.what = what
        self._to_proto = dict(pairs)
        self._from_proto = {value: member for member, value in pairs.items()}
        if len(self._from_proto) != len(self._to_proto):
            raise ValueError(f"{what}: two members share one protobuf value")
        enum_type = type(next(iter(pairs)))
        if missing := [member.name for member in enum_type if member not in pairs]:
            raise ValueError(f"{what}: no protobuf value for {', '.join(missing)}")

    @property
    def members(self) -> tuple[Internal, ...]:
        """The enum's members, each with its protobuf value."""
        return tuple(self._to_proto)

    def to_proto(self, member: Internal) -> Wire:
        """The protobuf value of `member`."""
        return self._to_proto[member]

    def from_proto(self, value: Wire) -> Internal:
        """The member that protobuf value `value` names."""
        try:
            return self._from_proto[value]
        except KeyError:
            raise WireError(f"unknown {self.what} {value}") from None
