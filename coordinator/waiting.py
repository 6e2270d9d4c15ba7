"""What a run waits for, in the operator's words ("waiting: 1 of 2 eligible silos; b declined: ...")."""

from __future__ import annotations

from collections.abc import Sequence

from aslora_coordinator.observation import SiloObservation
from aslora_coordinator.registry import RUN_DECLINED
from aslora_core.round_numbers import round_number
from aslora_rpc.messages import RunState


def silo_blocker(silo: SiloObservation) -> str | None:
    """Why a silo of the run cannot take a task now; None when it can."""
    record = silo.record
    if record.evicted:
        return f"{record.silo_id} evicted: {record.declined_reason}"
    reason = record.declined_reason
    if reason is not None:
        return f"{record.silo_id} {reason if reason.startswith(RUN_DECLINED) else f'declined: {reason}'}"
    if not silo.connected:
        return f"{record.silo_id} disconnected (last seen {silo.seconds_since_seen:.0f}s ago)"
    return None


def waiting_for(
    state: RunState,
    silos: Sequence[SiloObservation],
    min_silos: int,
    open_round: tuple[int, Sequence[str]] | None,
) -> str:
    """The run's blocker: too few eligible silos (and why the others are not), or the silos the open round
    still waits for (`open_round`: its index and pending silo ids); empty when nothing holds it up."""
    if state.ended:
        return ""
    if state is RunState.PAUSED:
        return "paused by the operator"
    blockers = [text for text in map(silo_blocker, silos) if text is not None]
    if open_round is not None:
        index, pending = open_round
        if not pending:
            return ""
        return f"round {round_number(index)}: waiting for {', '.join(sorted(pending))}" + "".join(
            f"; {text}" for text in blockers
        )
    if state is not RunState.WAITING_FOR_SILOS:
        return ""
    eligible = len(silos) - len(blockers)
    return f"waiting: {eligible} of {min_silos} eligible silos" + "".join(f"; {text}" for text in blockers)
