"""The public facts of one secure-aggregation round that every key, mask and share is bound to."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from aslora_rpc.secure_aggregation.errors import SecureAggregationError

MIN_THRESHOLD = 2
"""A sum is never a single silo's update."""
LENGTH_PREFIX_BYTES = 4


def majority(count: int) -> int:
    """The default threshold t for `count` silos: a strict majority, so no two disjoint sets of t exist."""
    return count // 2 + 1


def encode_fields(*fields: str | bytes) -> bytes:
    """An unambiguous byte string of `fields`: each one length-prefixed (4 bytes, big-endian)."""
    parts = []
    for field in fields:
        data = field.encode("utf-8") if isinstance(field, str) else field
        parts.append(len(data).to_bytes(LENGTH_PREFIX_BYTES, "big") + data)
    return b"".join(parts)


@dataclass(frozen=True)
class RoundContext:
    """One round of the protocol: the run, the task, the silos it was handed to, and the threshold t.

    `silos` is sorted; a silo's Shamir x-coordinate is its position there plus one.
    """

    run_id: str
    task_id: str
    silos: tuple[str, ...]
    threshold: int

    def __post_init__(self) -> None:
        if not self.run_id or not self.task_id:
            raise SecureAggregationError("a round needs a run id and a task id")
        if list(self.silos) != sorted(set(self.silos)):
            raise SecureAggregationError("the round's silos must be distinct and sorted")
        low = max(MIN_THRESHOLD, majority(len(self.silos)))
        if not low <= self.threshold <= len(self.silos):
            raise SecureAggregationError(
                f"threshold {self.threshold} for {len(self.silos)} silos: it must be at least {low} "
                f"(a majority, and at least {MIN_THRESHOLD}) and at most the number of silos"
            )

    @classmethod
    def with_majority(cls, run_id: str, task_id: str, silos: Iterable[str]) -> RoundContext:
        """A round of `silos` (any order) with the default threshold, a majority."""
        ordered = tuple(sorted(set(silos)))
        return cls(run_id, task_id, ordered, max(MIN_THRESHOLD, majority(len(ordered))))

    def x_of(self, silo: str) -> int:
        """The Shamir x-coordinate of `silo` (1-based position among the round's silos)."""
        try:
            return self.silos.index(silo) + 1
        except ValueError:
            raise SecureAggregationError(f"{silo!r} is not one of this round's silos") from None

    def binding(self, label: str, *fields: str | bytes) -> bytes:
        """Bytes naming this run and task after a domain `label`, for key derivation and signatures."""
        return encode_fields(label, self.run_id, self.task_id, *fields)
