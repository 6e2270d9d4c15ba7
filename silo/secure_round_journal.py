"""The silo's memory of its current secure-aggregation task across a coordinator restart.

A restarted coordinator hands out the same task id again. The silo then advertises the same keys and
sends the same masked update as before: it keeps the round's private keys and self-mask seed, the silos it
masked against with their public keys, and the masked update, in its own state folder (files only it can
read). It never masks one update against another set of silos or other keys for the same task: the
difference of two such maskings would give the coordinator pairwise masks. Which shares it released is
the share-release guard's journal (aslora_rpc/secure_aggregation/release_guard.py).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from aslora_core.atomic_files import write_atomically
from aslora_rpc.secure_aggregation.keys import PublicKeys, RoundKeys, private_bytes
from aslora_rpc.secure_aggregation.participant import RoundSecrets
from aslora_rpc.transfer import SpooledPayload, describe_file

JOURNAL_FILE = "secure-round.json"
MASKED_FILE = "secure-round-masked.bin"


@dataclass(frozen=True)
class SecureRoundEntry:
    """The secrets of one task's round, and once masked, the silos and keys masked against."""

    run_id: str
    task_id: str
    mask_key: str
    """Hex of the X25519 private key of the pairwise masks."""
    share_key: str
    """Hex of the X25519 private key of share encryption."""
    seed: str
    """Hex of the self-mask seed."""
    masked_with: dict[str, list[str]] = field(default_factory=dict)
    """Each silo masked against (this one among them) -> its public keys (mask, share), hex; empty before."""
    masked_sha256: str | None = None

    @classmethod
    def new(cls, run_id: str, task_id: str, secrets: RoundSecrets) -> SecureRoundEntry:
        """An entry for `secrets`, not masked yet."""
        return cls(
            run_id=run_id,
            task_id=task_id,
            mask_key=private_bytes(secrets.keys.mask).hex(),
            share_key=private_bytes(secrets.keys.share).hex(),
            seed=secrets.seed.hex(),
        )

    @property
    def secrets(self) -> RoundSecrets:
        """The round's private keys and seed."""
        keys = RoundKeys(
            mask=X25519PrivateKey.from_private_bytes(bytes.fromhex(self.mask_key)),
            share=X25519PrivateKey.from_private_bytes(bytes.fromhex(self.share_key)),
        )
        return RoundSecrets(keys=keys, seed=bytes.fromhex(self.seed))

    def peer_keys(self) -> dict[str, PublicKeys]:
        """The public keys of the silos masked against."""
        return {
            silo: PublicKeys(mask=bytes.fromhex(mask), share=bytes.fromhex(share))
            for silo, (mask, share) in self.masked_with.items()
        }


class SecureRoundJournal:
    """JOURNAL_FILE and MASKED_FILE in the silo's state folder, each replaced atomically."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / JOURNAL_FILE
        self.masked_path = state_dir / MASKED_FILE

    def entry_for(self, run_id: str, task_id: str) -> SecureRoundEntry | None:
        """The kept entry of this task of this run, if any (an unreadable journal keeps none)."""
        if not self.path.exists():
            return None
        try:
            entry = SecureRoundEntry(**json.loads(self.path.read_text(encoding="utf-8")))
        except (OSError, TypeError, ValueError):
            return None
        return entry if (entry.run_id, entry.task_id) == (run_id, task_id) else None

    def begin(self, entry: SecureRoundEntry) -> None:
        """Keep a new task's secrets before any key leaves the silo (drops the previous task's)."""
        self.masked_path.unlink(missing_ok=True)
        self._write(entry)

    def keep_masked(
        self, entry: SecureRoundEntry, peers: Mapping[str, PublicKeys], masked: bytes
    ) -> SpooledPayload:
        """Keep the masked update and whom it was masked against; it is what is sent, now and on any
        re-send."""
        write_atomically(self.masked_path, masked)
        info = describe_file(self.masked_path)
        masked_with = {silo: [keys.mask.hex(), keys.share.hex()] for silo, keys in sorted(peers.items())}
        self._write(
            SecureRoundEntry(
                **{**asdict(entry), "masked_with": masked_with, "masked_sha256": info.sha256.hex()}
            )
        )
        return SpooledPayload(self.masked_path, info)

    def masked_update(self, entry: SecureRoundEntry) -> SpooledPayload | None:
        """The kept masked update of `entry`'s task, if it is on disk whole."""
        if entry.masked_sha256 is None or not self.masked_path.exists():
            return None
        info = describe_file(self.masked_path)
        return SpooledPayload(self.masked_path, info) if info.sha256.hex() == entry.masked_sha256 else None

    def _write(self, entry: SecureRoundEntry) -> None:
        write_atomically(self.path, json.dumps(asdict(entry), sort_keys=True).encode("utf-8"))
