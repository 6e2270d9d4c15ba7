"""Load (slow: run by the benchmarks, `bench/federation_load.py`): 100 lightweight silo threads send
valid synthetic updates for 5 rounds to one coordinator process on loopback; every update is accepted,
aggregated and charged exactly once, and the coordinator's peak memory is reported."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.federation_load import LOCAL_STEPS, run_load

SILOS = 100
ROUNDS = 5
TIMEOUT_SECONDS = 600.0
MIB = 1 << 20


@pytest.mark.slow
def test_a_hundred_silos_for_five_rounds_lose_no_update(tiny_model_dir: Path, tmp_path: Path) -> None:
    report = run_load(tiny_model_dir, tmp_path, SILOS, ROUNDS, TIMEOUT_SECONDS)
    print(
        f"{SILOS} silos, {ROUNDS} rounds in {report.seconds:.1f}s; coordinator peak RSS "
        f"{report.peak_rss_bytes / MIB:.1f} MiB"
    )
    assert not report.errors, report.errors[:5]
    assert report.rounds_completed == ROUNDS
    assert report.deadline_closes == 0
    assert sum(len(r) for r in report.accepted.values()) == SILOS * ROUNDS
    assert all(sorted(rounds) == list(range(ROUNDS)) for rounds in report.accepted.values())
    assert set(report.participations.values()) == {ROUNDS} and len(report.participations) == SILOS
    assert set(report.ledger_steps.values()) == {ROUNDS * LOCAL_STEPS}
    assert report.every_update_accounted_for
    assert report.peak_rss_bytes > 0
    assert len(report.round_cpu_seconds) == ROUNDS and all(s > 0 for s in report.round_cpu_seconds)
