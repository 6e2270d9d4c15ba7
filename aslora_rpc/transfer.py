"""Payloads in chunks: spooled to disk as they arrive (checked against size and SHA-256), read back in chunks.

A receiver never holds a whole payload in memory while it arrives; what it decodes from the spooled file
(aslora_core.payload_files) is the only copy.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from aslora_rpc.options import MAX_CHUNK_BYTES

SHA256_BYTES = 32
READ_BLOCK_BYTES = 1 << 20


class TransferFault(StrEnum):
    """What went wrong with a payload in transit."""

    TOO_LARGE = "too_large"
    SIZE_MISMATCH = "size_mismatch"
    CHECKSUM_MISMATCH = "checksum_mismatch"
    MALFORMED = "malformed"


class TransferError(ValueError):
    """A payload that is larger than announced or allowed, or whose checksum does not match."""

    def __init__(self, fault: TransferFault, message: str) -> None:
        super().__init__(message)
        self.fault = fault


@dataclass(frozen=True)
class PayloadInfo:
    """The size and SHA-256 of a whole payload, announced before its chunks."""

    size_bytes: int
    sha256: bytes

    def __post_init__(self) -> None:
        if self.size_bytes < 0 or len(self.sha256) != SHA256_BYTES:
            raise TransferError(TransferFault.MALFORMED, "payload info needs a size and a 32-byte SHA-256")


@dataclass(frozen=True)
class SpooledPayload:
    """A payload on disk and its info."""

    path: Path
    info: PayloadInfo


def write_payload(data: bytes, directory: Path, prefix: str) -> SpooledPayload:
    """Write `data` to a new file in `directory` (fsync'd) and describe it."""
    directory.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=directory, prefix=prefix, suffix=".safetensors")
    with os.fdopen(handle, "wb") as stream:
        stream.write(data)
        stream.flush()
        os.fsync(stream.fileno())
    return SpooledPayload(Path(name), PayloadInfo(len(data), hashlib.sha256(data).digest()))


def describe_file(path: Path) -> PayloadInfo:
    """Size and SHA-256 of a file, read in blocks."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as stream:
        while block := stream.read(READ_BLOCK_BYTES):
            digest.update(block)
            size += len(block)
    return PayloadInfo(size, digest.digest())


def file_chunks(path: Path, chunk_bytes: int) -> Iterator[bytes]:
    """The file's content in chunks of `chunk_bytes` (the last one shorter)."""
    if not 0 < chunk_bytes <= MAX_CHUNK_BYTES:
        raise ValueError(f"chunk size must be in (0, {MAX_CHUNK_BYTES}], got {chunk_bytes}")
    with path.open("rb") as stream:
        while chunk := stream.read(chunk_bytes):
            yield chunk


class PayloadReceiver:
    """Spools the chunks of one announced payload to a file, refusing more bytes than announced."""

    def __init__(self, expected: PayloadInfo, directory: Path, prefix: str, max_bytes: int) -> None:
        """Refuse a payload above `max_bytes` before any chunk arrives."""
        if expected.size_bytes > max_bytes:
            raise TransferError(
                TransferFault.TOO_LARGE,
                f"payload of {expected.size_bytes} bytes exceeds the cap of {max_bytes}",
            )
        directory.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=directory, prefix=prefix, suffix=".part")
        self.path = Path(name)
        self.expected = expected
        self.received = 0
        self._stream = os.fdopen(handle, "wb")
        self._digest = hashlib.sha256()

    def write(self, chunk: bytes) -> None:
        """Append one chunk."""
        self.received += len(chunk)
        if self.received > self.expected.size_bytes:
            raise TransferError(
                TransferFault.SIZE_MISMATCH,
                f"received more than the {self.expected.size_bytes} bytes announced",
            )
        self._digest.update(chunk)
        self._stream.write(chunk)

    def finish(self) -> SpooledPayload:
        """Close the file and check its size and checksum against the announcement."""
        self._stream.close()
        if self.received != self.expected.size_bytes:
            raise TransferError(
                TransferFault.SIZE_MISMATCH,
                f"received {self.received} bytes of the {self.expected.size_bytes} announced",
            )
        if self._digest.digest() != self.expected.sha256:
            raise TransferError(
                TransferFault.CHECKSUM_MISMATCH, "payload SHA-256 does not match the announced one"
            )
        return SpooledPayload(self.path, self.expected)

    def discard(self) -> None:
        """Close and delete the partial file (after an error)."""
        self._stream.close()
        self.path.unlink(missing_ok=True)


def receive_payload(
    chunks: Iterator[bytes], expected: PayloadInfo, directory: Path, prefix: str, max_bytes: int
) -> SpooledPayload:
    """Spool `chunks` to a file in `directory` and verify it; nothing is left behind on failure."""
    receiver = PayloadReceiver(expected, directory, prefix, max_bytes)
    try:
        for chunk in chunks:
            receiver.write(chunk)
        return receiver.finish()
    except BaseException:
        receiver.discard()
        raise
