"""The silo's journal of released shares: per task id, one kind of share per peer, across every attempt.

A self-mask share of a peer that reported and a mask-key share of the same peer together reveal its
update, so a silo that released one kind for a task never releases the other for that task, even after
it or the coordinator restarts: the journal is written (atomically) before any share leaves the silo.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path

from aslora_core.atomic_files import write_atomically
from aslora_rpc.secure_aggregation.errors import SecureAggregationError, ShareReleaseRefusedError

LOGGER = logging.getLogger(__name__)
JOURNAL_FILE = "secure-aggregation-releases.json"
"""The journal's name in the silo's state folder."""
JOURNAL_VERSION = 1


class ShareKind(StrEnum):
    """Which of a peer's secrets a share belongs to."""

    SELF_MASK = "self-mask"
    """The peer's self-mask seed: released only if the peer reported its masked update."""
    MASK_KEY = "mask-key"
    """The peer's pairwise mask key: released only if the peer dropped."""


class ShareReleaseGuard:
    """Authorises share releases against the journal at `path` and records them before they happen."""

    def __init__(self, path: Path) -> None:
        """Read the journal at `path` (none yet: nothing released); an unreadable one is an error."""
        self._path = path
        self._lock = threading.Lock()
        self._released = self._read(path)

    def authorize(self, task_id: str, kinds: Mapping[str, ShareKind]) -> None:
        """Record that the shares `kinds` (peer -> kind) of `task_id` are released, or raise
        ShareReleaseRefusedError, logging the reason, when one peer would then have both kinds released."""
        with self._lock:
            before = self._released.get(task_id, {})
            conflicts = sorted(peer for peer, kind in kinds.items() if before.get(peer, kind) is not kind)
            if conflicts:
                reason = (
                    f"task {task_id}: refused to release shares that, with those released before, "
                    f"would reveal both the self mask and the mask key of {', '.join(conflicts)}"
                )
                LOGGER.warning("secure aggregation: %s", reason)
                raise ShareReleaseRefusedError(reason)
            after = {**before, **kinds}
            if after != before:
                updated = {**self._released, task_id: after}
                write_atomically(self._path, _document(updated))
                self._released = updated

    @staticmethod
    def _read(path: Path) -> dict[str, dict[str, ShareKind]]:
        if not path.exists():
            return {}
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
            if document["version"] != JOURNAL_VERSION:
                raise ValueError(f"version {document['version']}")
            return {
                task: {peer: ShareKind(kind) for peer, kind in peers.items()}
                for task, peers in document["tasks"].items()
            }
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise SecureAggregationError(
                f"{path} is not a share-release journal ({error}); it must not be discarded, since it is "
                "what stops this silo from releasing both kinds of a peer's shares"
            ) from None


def _document(released: Mapping[str, Mapping[str, ShareKind]]) -> bytes:
    tasks = {
        task: {peer: kind.value for peer, kind in sorted(peers.items())} for task, peers in released.items()
    }
    return (json.dumps({"version": JOURNAL_VERSION, "tasks": tasks}, indent=2) + "\n").encode("utf-8")
