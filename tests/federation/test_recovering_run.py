"""A run that recovers, real processes over mutual TLS: silo-b trains a round and stops (stalled, then
killed); restarted with a bad label row it is refused at its preflight for the run (exit 2) while the status
names it as what the run waits for; fixed, with more records, it rejoins, is planned for its new record
count, and the run finishes with the coordinator's recomputed epsilon equal to silo-b's own ledger; the
operator's `events` stream shows the run's lifecycle from start to shutdown."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from aslora_silo.stall_point import STALL_ROUND_ENV
from tests.federation.long_lived import (
    DELTA,
    EXIT_TIMEOUT_SECONDS,
    LongLivedFederation,
    run_tables,
)
from tests.federation.processes import spawn
from tests.grpc.helpers import write_tsv

ROUNDS = 3
STALLED_ROUND = 1
"""silo-b stops once it has trained and been charged for this round (0-based), before it sends."""
FIRST_SIZE = 40
FIXED_SIZE = 48
BUDGET = 100.0
DEADLINE_SECONDS = 8
HEARTBEAT_TIMEOUT_SECONDS = 3
BAD_ROW = "positive\ta row whose label is not one of the run's\n"
PREFLIGHT_EXIT_CODE = 2


def test_a_silo_refused_at_its_preflight_is_fixed_rejoins_and_the_accounting_is_exact(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    run = run_tables(tiny_model_dir, tmp_path / "results.json", "aslora", rounds=ROUNDS, min_silos=2)
    run["federation"] |= {
        "round_deadline_seconds": DEADLINE_SECONDS,
        "heartbeat_timeout_seconds": HEARTBEAT_TIMEOUT_SECONDS,
    }
    federation = LongLivedFederation(tmp_path, tiny_model_dir, run, {"silo-a": BUDGET, "silo-b": BUDGET})
    data_b = tmp_path / "silo-b-data.tsv"
    try:
        federation.start_coordinator()
        events_log = tmp_path / "events.log"
        watcher = spawn(["coordinator", "events", *federation.operator_options(), "-o", "json"], events_log)
        federation.start_silo("silo-a", 1, write_tsv(tmp_path / "silo-a-data.tsv", FIRST_SIZE))
        write_tsv(data_b, FIRST_SIZE, 1000)
        stalled = federation.start_silo("silo-b", 1, data_b, {STALL_ROUND_ENV: str(STALLED_ROUND)})
        federation.wait_for(lambda: "stall point" in federation.tail("silo-b"), "stalled silo-b")
        stalled.send_signal(signal.SIGKILL)
        stalled.wait(EXIT_TIMEOUT_SECONDS)

        def waiting_for() -> str:
            text: str = federation.admin("status")["waiting_for"]
            return text

        federation.wait_for(
            lambda: waiting_for().startswith("waiting: 1 of 2 eligible silos; silo-b disconnected"),
            "status naming the stopped silo",
        )
        with data_b.open("a", encoding="utf-8") as stream:
            stream.write(BAD_ROW)
        refused = federation.start_silo("silo-b", 1, data_b)
        assert refused.wait(EXIT_TIMEOUT_SECONDS * 4) == PREFLIGHT_EXIT_CODE, federation.tail("silo-b")
        assert "Traceback" not in federation.tail("silo-b")
        assert f"line {FIRST_SIZE + 2}" in federation.tail("silo-b")
        blocker = waiting_for()
        assert blocker.startswith("waiting: 1 of 2 eligible silos; silo-b declined the run: data: "), blocker
        assert f"line {FIRST_SIZE + 2}" in blocker

        write_tsv(data_b, FIXED_SIZE, 1000)
        federation.start_silo("silo-b", 1, data_b)
        federation.wait_silos()
        (run_view,) = federation.runs().values()
        assert run_view["state"] == "finished", federation.tail()
        silos = {silo["silo_id"]: silo for silo in federation.admin("silos")}
        assert silos["silo-b"]["dataset_size"] == FIXED_SIZE
        assert silos["silo-b"]["declined_reason"] is None
        assert silos["silo-b"]["rounds_participated"] == ROUNDS, "round 2 was redone with silo-b"
        ledger = {entry["silo_id"]: entry for entry in federation.admin("privacy")["entries"]}
        sample_rates = {event["sample_rate"] for event in ledger["silo-b"]["events"]}
        assert len(sample_rates) == 2, "charged at its first q, then at its new one"
        for name in ("silo-a", "silo-b"):
            own = federation.silo_ledger(name).epsilon(DELTA)
            assert abs(ledger[name]["epsilon_recomputed"] - own) <= 1e-9 * own, name
        assert "local training loss" in federation.tail("silo-a")
        assert federation.admin("shutdown")["action"] == "shutdown"
        assert watcher.wait(EXIT_TIMEOUT_SECONDS) == 0, events_log.read_text()
    finally:
        federation.close()
    events = [json.loads(line) for line in events_log.read_text().splitlines() if line.startswith("{")]
    kinds = [event["kind"] for event in events]
    assert kinds[0] in ("run-started", "listening") and kinds[-1] == "shutting-down", kinds
    registered = [event["message"] for event in events if event["kind"] == "silo-registered"]
    assert sorted(message.split()[1] for message in registered) == ["silo-a", "silo-b", "silo-b"]
    assert f"registered with {FIXED_SIZE} records" in registered[-1]
    assert any(event["kind"] == "silo-declined" and "silo-b" in event["message"] for event in events)
    assert kinds.count("round-closed") == kinds.count("round-opened") >= ROUNDS + 1
    assert "run-ended" in kinds
