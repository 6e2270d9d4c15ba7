"""Silo faults in a real federation of three silos with min_silos = 2: a silo SIGKILLed after it trained
and before it sent does not stop the round, which closes at its deadline with the others, and once
restarted on its state folder it takes part in a later round with its privacy ledger continued; a silo
that stops answering (SIGSTOP, a straggler) has its round closed at the deadline too. Both faults strike
at the silo's stall point (it stops itself), not by racing a silo that may finish first."""

from __future__ import annotations

import signal
from pathlib import Path

from typer.testing import CliRunner

from aslora_cli.main import app
from tests.reliability.harness import LOCAL_STEPS, SHARD_SIZES, Federation, silo_name, wait_until

ROUNDS = 3
SILOS = len(SHARD_SIZES)
MIN_SILOS = 2
DEADLINE_SECONDS = 6.0
STEP_TIMEOUT_SECONDS = 60.0
RUN_TIMEOUT_SECONDS = 90.0
KILLED, STRAGGLER = 2, 1
"""Silo 2 is killed in round 0 and restarted; silo 1 stops answering in round 1."""


def _operator(federation: Federation, command: str) -> None:
    outcome = CliRunner().invoke(
        app, ["coordinator", command, "--address", f"127.0.0.1:{federation.port}", "--insecure"]
    )
    assert outcome.exit_code == 0, outcome.output


def _registered(federation: Federation, index: int, times: int) -> bool:
    log = (federation.work / f"silo-{index}.log").read_text()
    return log.count("registered in run") >= times


def test_a_killed_and_a_stalled_silo_do_not_stop_the_rounds_and_the_killed_one_comes_back(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    federation = Federation.small(
        tmp_path, tiny_model_dir, rounds=ROUNDS, min_silos=MIN_SILOS, deadline_seconds=DEADLINE_SECONDS
    )
    try:
        federation.start_coordinator()
        # Paused until all three have registered, so that round 0 is handed to each of them.
        _operator(federation, "pause")
        stalls = {KILLED: 0, STRAGGLER: 1}
        for index in range(SILOS):
            federation.start_silo(index, stalls.get(index))
        wait_until(
            lambda: all(_registered(federation, i, 1) for i in range(SILOS)),
            STEP_TIMEOUT_SECONDS,
            "registration of every silo",
            federation,
        )
        _operator(federation, "resume")

        federation.wait_silo_stopped(KILLED, STEP_TIMEOUT_SECONDS)
        assert federation.has_charged(KILLED, 0)
        federation.signal_silo(KILLED, signal.SIGKILL)
        _operator(federation, "pause")  # the next round waits until the killed silo is back
        federation.wait_for_log(
            f"round 1 closed at its deadline without ['{silo_name(KILLED)}']", STEP_TIMEOUT_SECONDS
        )
        federation.start_silo(KILLED)
        wait_until(
            lambda: _registered(federation, KILLED, 2), STEP_TIMEOUT_SECONDS, "re-registration", federation
        )
        _operator(federation, "resume")

        federation.wait_silo_stopped(STRAGGLER, STEP_TIMEOUT_SECONDS)
        assert federation.has_charged(STRAGGLER, 1)
        federation.wait_for_log(
            f"round 2 closed at its deadline without ['{silo_name(STRAGGLER)}']", STEP_TIMEOUT_SECONDS
        )
        federation.signal_silo(STRAGGLER, signal.SIGCONT)

        federation.wait_silos_exit(RUN_TIMEOUT_SECONDS)
        assert federation.wait_coordinator_exit(RUN_TIMEOUT_SECONDS) == 0
        checkpoint = federation.checkpoint()
        ledgers = {silo_name(i): federation.silo_ledger(i) for i in range(SILOS)}
    finally:
        federation.close()

    results = federation.results()
    everyone = [silo_name(i) for i in range(SILOS)]
    assert [record["silos"] for record in results["rounds"]] == [
        [silo_name(0), silo_name(1)],
        [silo_name(0), silo_name(2)],
        everyone,
    ]
    assert checkpoint.rounds_completed == ROUNDS
    assert {s.silo_id: s.rounds_participated for s in checkpoint.silos} == dict(
        zip(everyone, (3, 2, 2), strict=True)
    )
    for silo in checkpoint.silos:
        # Every silo was handed a task in every round and charged itself for each, the killed one before
        # it died: the coordinator's recomputation and the silo's own ledger agree, nothing lost or doubled.
        assert silo.ledger == ledgers[silo.silo_id]
        assert sum(event["steps"] for event in silo.ledger["events"]) == ROUNDS * LOCAL_STEPS
