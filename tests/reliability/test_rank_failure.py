"""A silo on two gloo ranks whose second rank dies (SIGKILL) in the middle of round 0, in a real
federation of two silos: the round fails at that silo with the reason, the coordinator closes it with the
other silo's update, the silo registers again and trains round 1 on ranks started anew; every round is
charged once, in the silo's own ledger and in the coordinator's."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from aslora_cli.main import app
from tests.reliability.harness import LOCAL_STEPS, Federation, silo_name, wait_until

ROUNDS = 2
SILOS = 2
MULTI_DEVICE = 0
"""Silo 0 trains on two ranks; its rank 1 dies in round 0."""
FAILED_ROUND = 0
DEADLINE_SECONDS = 60.0
STEP_TIMEOUT_SECONDS = 90.0
RUN_TIMEOUT_SECONDS = 150.0
RANK_TIMEOUT_SECONDS = 30
REASON = "training rank 1 of 2 was killed by SIGKILL"


def _operator(federation: Federation, command: str) -> None:
    outcome = CliRunner().invoke(
        app, ["coordinator", command, "--address", f"127.0.0.1:{federation.port}", "--insecure"]
    )
    assert outcome.exit_code == 0, outcome.output


def test_a_rank_killed_mid_round_fails_that_round_at_its_silo_which_trains_the_next(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    federation = Federation.small(
        tmp_path, tiny_model_dir, rounds=ROUNDS, min_silos=1, deadline_seconds=DEADLINE_SECONDS
    )
    training = federation.silo_tables[MULTI_DEVICE]["training"]
    training.update({"devices": 2, "rank_timeout_seconds": RANK_TIMEOUT_SECONDS})
    silo_log = tmp_path / f"silo-{MULTI_DEVICE}.log"
    try:
        federation.start_coordinator()
        _operator(federation, "pause")  # until both have registered, so that round 0 has both
        federation.start_silo(MULTI_DEVICE, rank_kill_round=FAILED_ROUND)
        federation.start_silo(1)
        wait_until(
            lambda: all(
                (tmp_path / f"silo-{i}.log").read_text().count("registered in run") for i in range(SILOS)
            ),
            STEP_TIMEOUT_SECONDS,
            "registration of both silos",
            federation,
        )
        _operator(federation, "resume")
        federation.wait_silos_exit(RUN_TIMEOUT_SECONDS)
        assert federation.wait_coordinator_exit(RUN_TIMEOUT_SECONDS) == 0
        checkpoint = federation.checkpoint()
        ledgers = {silo_name(i): federation.silo_ledger(i) for i in range(SILOS)}
    finally:
        federation.close()

    assert f"round {FAILED_ROUND + 1} failed: {REASON}" in silo_log.read_text()
    assert f"the silo's training failed: {REASON}" in federation.coordinator_log.read_text()
    assert [record["silos"] for record in federation.results()["rounds"]] == [
        [silo_name(1)],
        [silo_name(0), silo_name(1)],
    ]
    for silo in checkpoint.silos:
        # The failed round was charged once (before a record was read), the next round once on top.
        assert silo.ledger == ledgers[silo.silo_id]
        assert sum(event["steps"] for event in silo.ledger["events"]) == ROUNDS * LOCAL_STEPS
