"""A 256 MiB adapter goes up and down intact through a real gRPC server on loopback, and the receiving
process's peak memory grows by at most twice the payload (DESIGN 4: never more than two copies)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.grpc.transfer_measurement import (
    LAYER_BYTES,
    MIB,
    PEER_TIMEOUT_SECONDS,
    measure_download,
    measure_upload,
)

LAYERS = 4
"""Four layers of two 32 MiB float32 factors: a 256 MiB payload."""
MAX_COPIES = 2.0


@pytest.mark.timeout(PEER_TIMEOUT_SECONDS)
def test_a_256_mib_update_goes_up_intact_and_the_receiver_holds_at_most_two_copies(tmp_path: Path) -> None:
    measured = measure_upload(tmp_path, LAYERS)
    assert measured.size_bytes >= LAYERS * LAYER_BYTES
    assert measured.intact
    print(f"upload: {measured.size_bytes / MIB:.0f} MiB, peak growth {measured.copies:.2f}x")
    assert measured.copies <= MAX_COPIES


@pytest.mark.timeout(PEER_TIMEOUT_SECONDS)
def test_a_256_mib_adapter_comes_down_intact_and_the_receiver_holds_at_most_two_copies(
    tmp_path: Path,
) -> None:
    measured = measure_download(tmp_path, LAYERS)
    assert measured.size_bytes >= LAYERS * LAYER_BYTES
    assert measured.intact
    print(f"download: {measured.size_bytes / MIB:.0f} MiB, peak growth {measured.copies:.2f}x")
    assert measured.copies <= MAX_COPIES
