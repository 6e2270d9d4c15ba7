"""What a round attempt publishes when it opens: each participant's task and, when the run uses secure
aggregation, the round's public facts."""

from __future__ import annotations

from aslora_coordinator.config import RunConfig
from aslora_coordinator.registry import SiloRecord
from aslora_coordinator.secure_round import STEP_SHARE_OF_DEADLINE, SecureRound, statistics_keys
from aslora_core.config import Weighting
from aslora_core.factor_choice import FactorChoice
from aslora_core.factors import AdapterState
from aslora_rpc.messages import Task
from aslora_rpc.secure_aggregation.context import RoundContext
from aslora_rpc.secure_aggregation.fixed_point import RingCodec, UpdateLayout
from aslora_rpc.transfer import SpooledPayload


def round_task_id(run_id: str, index: int, attempt: int) -> str:
    """The id of every task of one round attempt."""
    return f"{run_id}-r{index}-a{attempt}"


def new_secure_round(
    config: RunConfig,
    run_id: str,
    task_id: str,
    participants: list[SiloRecord],
    selection: dict[str, FactorChoice],
    *,
    global_state: AdapterState,
    now: float,
) -> SecureRound:
    """The public facts of a secure round: its silos and threshold, their weights, layout and codec."""
    uniform = config.federation.weighting is Weighting.UNIFORM
    weights = {s.silo_id: 1.0 if uniform else float(s.dataset_size) for s in participants}
    keys = statistics_keys(selection, config.privacy.clipping, config.training.local_steps)
    return SecureRound(
        context=RoundContext.with_majority(run_id, task_id, weights),
        layout=UpdateLayout.for_round(global_state, selection, keys),
        codec=RingCodec(round_weight=sum(weights.values())),
        weights=weights,
        step_seconds=STEP_SHARE_OF_DEADLINE * config.rounds.round_deadline_seconds,
        opened_at=now,
    )


def round_tasks(
    config: RunConfig,
    task_id: str,
    index: int,
    participants: list[SiloRecord],
    selection: dict[str, FactorChoice],
    *,
    adapter: SpooledPayload,
    secure: SecureRound | None,
) -> dict[str, Task]:
    """Each participant's task, planned at its registered sigma and q, by silo id."""
    return {
        silo.silo_id: Task(
            task_id=task_id,
            round_index=index,
            selection=selection,
            noise_multiplier=silo.noise_multiplier,
            sample_rate=silo.sample_rate,
            local_steps=config.training.local_steps,
            adapter=adapter.info,
            seconds_to_deadline=config.rounds.round_deadline_seconds,
            secure_aggregation=None if secure is None else secure.plan_for(silo.silo_id),
        )
        for silo in participants
    }
