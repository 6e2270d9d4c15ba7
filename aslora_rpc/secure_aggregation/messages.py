"""What the coordinator asks a surviving silo for at unmasking time, and what the silo answers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from aslora_rpc.secure_aggregation.shamir import Share


@dataclass(frozen=True)
class UnmaskRequest:
    """The coordinator's claim of which silos reported a masked update for the task; every other silo
    that shared keys dropped."""

    task_id: str
    survivors: frozenset[str]


@dataclass(frozen=True)
class ShareRelease:
    """One silo's answer: its share of each survivor's self-mask seed and of each dropped silo's mask key."""

    silo: str
    task_id: str
    self_mask: Mapping[str, Share] = field(default_factory=dict)
    mask_key: Mapping[str, Share] = field(default_factory=dict)
