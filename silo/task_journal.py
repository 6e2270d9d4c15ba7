"""The silo's memory of its current task across restarts (its own and the coordinator's).

Before the silo charges its privacy ledger for a task it writes the task's id and the ledger as it was
before the charge; once it has trained, it writes the finished update beside it. So when the same task
comes back (the coordinator restarted, or the answer to an upload was lost) the silo re-sends the very
same update instead of training again, and a task it had charged but not finished (the silo itself was
killed while training) is trained again from the pre-charge ledger: charged once either way.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from aslora_core.atomic_files import write_atomically
from aslora_rpc.transfer import PayloadInfo, SpooledPayload, describe_file

JOURNAL_FILE = "current-task.json"
UPDATE_FILE = "current-update.safetensors"


@dataclass(frozen=True)
class JournalEntry:
    """The task this silo charged itself for last, and its finished update once there is one."""

    run_id: str
    task_id: str
    round_index: int
    ledger_before: dict[str, Any]
    """`PrivacyAccountant.to_dict()` before this task's charge."""
    update_sha256: str | None = None
    """Hex SHA-256 of the finished update in UPDATE_FILE; None while it trains."""


class TaskJournal:
    """JOURNAL_FILE and UPDATE_FILE in the silo's state folder, each replaced atomically."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / JOURNAL_FILE
        self.update_path = state_dir / UPDATE_FILE

    def load(self) -> JournalEntry | None:
        """The recorded task, or None (no task yet, or an unreadable journal: then it is trained anew)."""
        if not self.path.exists():
            return None
        try:
            return JournalEntry(**json.loads(self.path.read_text(encoding="utf-8")))
        except (OSError, TypeError, ValueError):
            return None

    def entry_for(self, run_id: str, task_id: str) -> JournalEntry | None:
        """The recorded entry if it is of this task of this run (the task was charged already)."""
        entry = self.load()
        return entry if entry is not None and (entry.run_id, entry.task_id) == (run_id, task_id) else None

    def begin(self, entry: JournalEntry) -> None:
        """Record a task about to be charged (drops the update of the previous task)."""
        self.update_path.unlink(missing_ok=True)
        self._write(entry)

    def finish(self, entry: JournalEntry, update: bytes) -> SpooledPayload:
        """Keep the finished update of `entry`'s task; it is what is sent, now and on any re-send."""
        write_atomically(self.update_path, update)
        info = describe_file(self.update_path)
        self._write(JournalEntry(**{**asdict(entry), "update_sha256": info.sha256.hex()}))
        return SpooledPayload(self.update_path, info)

    def finished_update(self, entry: JournalEntry) -> SpooledPayload | None:
        """The kept update of `entry`'s task, if it is on disk whole."""
        if entry.update_sha256 is None or not self.update_path.exists():
            return None
        info: PayloadInfo = describe_file(self.update_path)
        return SpooledPayload(self.update_path, info) if info.sha256.hex() == entry.update_sha256 else None

    def _write(self, entry: JournalEntry) -> None:
        write_atomically(self.path, json.dumps(asdict(entry), sort_keys=True).encode("utf-8"))
