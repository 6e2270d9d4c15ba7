"""Which of a silo's records are held out for evaluation: decided per record by a keyed hash of the record
itself, so that adding or removing one record never moves another between training and evaluation."""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path

import numpy as np

from aslora_core.data import LabelledTexts
from aslora_core.data.images import LabelledImages
from aslora_core.data.instructions import InstructionRecords
from aslora_core.data.records import Records
from aslora_silo.errors import SiloError

SPLIT_KEY_FILE = "evaluation-split.key"
SPLIT_KEY_BYTES = 32
KEY_FILE_MODE = 0o600
"""Only the silo's own user reads the key: whoever knows it can tell which records are held out."""
_HASH_BYTES = 8
_HASH_SPAN = float(1 << (8 * _HASH_BYTES))
_LENGTH_BYTES = 8


def split_key(state_dir: Path) -> bytes:
    """The silo's split key from its state folder, created there (owner-only) on first use."""
    path = state_dir / SPLIT_KEY_FILE
    state_dir.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, KEY_FILE_MODE)
    except FileExistsError:
        key = path.read_bytes()
        if len(key) != SPLIT_KEY_BYTES:
            raise SiloError(f"the evaluation split key {path} is not {SPLIT_KEY_BYTES} bytes") from None
        return key
    key = os.urandom(SPLIT_KEY_BYTES)
    with os.fdopen(descriptor, "wb") as stream:
        stream.write(key)
        stream.flush()
        os.fsync(stream.fileno())
    return key


def _framed(*parts: bytes) -> bytes:
    # Length-prefixed, so that no two different records frame to the same bytes.
    return b"".join(len(part).to_bytes(_LENGTH_BYTES, "big") + part for part in parts)


def record_contents(records: Records) -> list[bytes]:
    """Each record's own content as bytes (class by name, not index: the same whatever the label order)."""
    if isinstance(records, LabelledTexts):
        names = records.label_names
        return [
            _framed(
                example.text.encode(),
                b"" if example.text_pair is None else b"p" + example.text_pair.encode(),
                names[example.label].encode(),
            )
            for example in records.examples
        ]
    if isinstance(records, InstructionRecords):
        return [
            _framed(p.encode(), r.encode()) for p, r in zip(records.prompts, records.responses, strict=True)
        ]
    if isinstance(records, LabelledImages):
        return [
            _framed(str(image.dtype).encode(), repr(image.shape).encode(), image.tobytes(), names.encode())
            for image, names in zip(
                records.images, (records.label_names[i] for i in records.label_indices), strict=True
            )
        ]
    raise SiloError(f"no evaluation split for records of type {type(records).__name__}")


def held_out(records: Records, key: bytes, fraction: float) -> np.ndarray:
    """Whether each record is held out: HMAC-SHA256 of its content under `key`, read as a number in
    [0, 1), is below `fraction`."""
    draws = [
        int.from_bytes(hmac.new(key, content, hashlib.sha256).digest()[:_HASH_BYTES], "big") / _HASH_SPAN
        for content in record_contents(records)
    ]
    return np.asarray(draws, dtype=np.float64) < fraction


def split(records: Records, key: bytes, fraction: float) -> tuple[Records, Records]:
    """(training records, held-out records), each in file order."""
    mask = held_out(records, key, fraction)
    return records.subset(np.flatnonzero(~mask)), records.subset(np.flatnonzero(mask))
