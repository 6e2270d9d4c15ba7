"""Secure rounds with silos that drop, and a coordinator killed while it unmasks: four silo processes and
the coordinator over mutual TLS, the tiny model, one round of all four (threshold t = 3)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from aslora_coordinator.crash_points import CrashPoint
from tests.secure_aggregation.processes import ROUNDS, SILOS, SecureFederation

FIRST_TASK_SUFFIX = "-r0-a0"
"""The first attempt of round 0: its task id is `<run id>-r0-a0`."""


@pytest.fixture
def federation(tiny_model_dir: Path, tmp_path: Path) -> Iterator[SecureFederation]:
    """A federation whose processes are all killed at the end of the test."""
    running = SecureFederation(tmp_path, tiny_model_dir, max_round_attempts=1)
    try:
        yield running
    finally:
        running.close()


def _first_task(released: dict[str, dict[str, str]]) -> dict[str, str]:
    (task,) = [kinds for task, kinds in released.items() if task.endswith(FIRST_TASK_SUFFIX)]
    return task


def test_a_silo_dropping_after_sharing_is_excluded_from_the_sum(federation: SecureFederation) -> None:
    """silo-d shares its keys, trains round 0 and stops before uploading: round 0 is unmasked from the
    other three, with their shares of silo-d's mask key."""
    federation.start(stall=("silo-d",))
    federation.wait_coordinator()
    rounds = federation.results()["rounds"]
    assert len(rounds) == ROUNDS, federation.tail()
    assert rounds[0]["silos"] == ["silo-a", "silo-b", "silo-c"]
    for silo in ("silo-a", "silo-b", "silo-c"):
        assert _first_task(federation.released(silo)) == {
            "silo-a": "self-mask",
            "silo-b": "self-mask",
            "silo-c": "self-mask",
            "silo-d": "mask-key",
        }


def test_a_silo_dropping_before_sharing_is_excluded_cleanly(federation: SecureFederation) -> None:
    """silo-d does not pin silo-a, so it refuses the round's keys (and logs why) and shares nothing: the
    others mask against three silos only, and no share of silo-d's is asked for."""
    federation.start(unpinned={"silo-d": ("silo-a",)})
    federation.wait_coordinator()
    rounds = federation.results()["rounds"]
    assert len(rounds) == ROUNDS, federation.tail()
    assert rounds[0]["silos"] == ["silo-a", "silo-b", "silo-c"]
    for silo in ("silo-a", "silo-b", "silo-c"):
        assert _first_task(federation.released(silo)) == dict.fromkeys(
            ("silo-a", "silo-b", "silo-c"), "self-mask"
        )
    assert federation.released("silo-d") == {}
    log = federation.silo_log("silo-d").read_text()
    assert "refused: 'silo-a' is not among this silo's pinned peers" in log


def test_fewer_survivors_than_the_threshold_fail_the_round(federation: SecureFederation) -> None:
    """silo-c and silo-d drop after sharing: two masked updates, t = 3. Nobody is asked for shares,
    nothing is decoded, and with one attempt allowed the run fails."""
    federation.start(stall=("silo-c", "silo-d"))
    federation.wait_coordinator()
    log = federation.log.read_text()
    assert "secure aggregation decoded nothing (2 masked update(s), fewer than 3" in log, federation.tail()
    assert "got fewer than 2 updates in 1 attempts" in log
    assert all(federation.released(silo) == {} for silo in SILOS)


def test_a_coordinator_killed_while_unmasking_completes_the_round_on_restart(
    federation: SecureFederation,
) -> None:
    """The coordinator dies once every survivor released its shares of round 0, before decoding. On
    restart it hands out the same task: each silo sends the same masked update from its journal and
    releases the same kind of shares again; no silo releases both kinds of any peer's shares."""
    federation.start(crash_at=CrashPoint.DURING_UNMASKING)
    federation.wait_coordinator(crashed=True)
    before = {silo: _first_task(federation.released(silo)) for silo in SILOS}
    assert all(kinds == dict.fromkeys(SILOS, "self-mask") for kinds in before.values())
    federation.start_coordinator()
    federation.wait_coordinator()
    rounds = federation.results()["rounds"]
    assert len(rounds) == ROUNDS, federation.tail()
    assert rounds[0]["silos"] == list(SILOS)
    for silo in SILOS:
        assert _first_task(federation.released(silo)) == before[silo]
        log = federation.silo_log(silo).read_text()
        assert "sending its kept update" in log
        assert "refused" not in log
