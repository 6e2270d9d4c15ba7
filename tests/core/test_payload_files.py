"""Decoding from a spooled file agrees with aslora_core.serialization's decoding from bytes."""

from __future__ import annotations

from pathlib import Path

import pytest

from aslora_core.payload_files import state_from_file, update_from_file
from aslora_core.serialization import (
    SerializationError,
    state_from_bytes,
    state_to_bytes,
    update_from_bytes,
    update_to_bytes,
)
from tests.core.payloads import SAMPLE_NOISE, same_states, same_updates, sample_state, sample_update


def test_a_state_read_from_its_file_equals_the_one_read_from_its_bytes(tmp_path: Path) -> None:
    payload = state_to_bytes(sample_state())
    (tmp_path / "state").write_bytes(payload)
    assert same_states(state_from_file(tmp_path / "state"), state_from_bytes(payload))


@pytest.mark.parametrize("with_statistics", [True, False])
def test_an_update_read_from_its_file_equals_the_one_read_from_its_bytes(
    tmp_path: Path, with_statistics: bool
) -> None:
    payload = update_to_bytes(sample_update(with_statistics=with_statistics))
    (tmp_path / "update").write_bytes(payload)
    assert same_updates(
        update_from_file(tmp_path / "update", SAMPLE_NOISE), update_from_bytes(payload, SAMPLE_NOISE)
    )


def test_a_file_of_another_format_or_garbage_is_refused(tmp_path: Path) -> None:
    (tmp_path / "state").write_bytes(state_to_bytes(sample_state()))
    with pytest.raises(SerializationError, match="expected format"):
        update_from_file(tmp_path / "state", SAMPLE_NOISE)
    (tmp_path / "garbage").write_bytes(b"\x10" + bytes(40))
    with pytest.raises(SerializationError):
        state_from_file(tmp_path / "garbage")
