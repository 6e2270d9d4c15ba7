"""The coordinator's evaluation phase: which answers it keeps, and whom its figures cover."""

from __future__ import annotations

from pathlib import Path

import pytest

from aslora_coordinator.errors import FederationError
from aslora_coordinator.evaluation_phase import EvaluationPhase, evaluation_tasks
from aslora_core.config import FederationSettings
from aslora_core.federated_evaluation import EvaluationSums
from aslora_rpc.error_codes import ErrorCode
from aslora_rpc.messages import EvaluationReply
from aslora_rpc.transfer import PayloadInfo, SpooledPayload

ASKED = 5.0
FEDERATION = FederationSettings(
    silo_evaluation=True, evaluation_noise_multiplier=ASKED, evaluation_loss_bound=2.0
)
SUMS = EvaluationSums(3.0, 4.0, 6.0)


def _phase() -> EvaluationPhase:
    adapter = SpooledPayload(Path("adapter"), PayloadInfo(4, b"\0" * 32))
    tasks = evaluation_tasks(["a", "b", "c"], "run-r2-eval", 2, FEDERATION, adapter=adapter, seconds=9.0)
    return EvaluationPhase(2, "run-r2-eval", tasks, adapter, deadline=9.0)


def _reply(
    silo: str, sums: EvaluationSums | None = SUMS, sigma: float = ASKED, task: str = "run-r2-eval"
) -> EvaluationReply:
    return EvaluationReply(silo, task, sums, "" if sums else "declines", sigma, 1.0)


def test_tasks_ask_the_plans_noise_for_one_full_batch_release() -> None:
    task = _phase().tasks["a"]
    assert (task.evaluate, task.noise_multiplier, task.sample_rate, task.local_steps, task.selection) == (
        True,
        ASKED,
        1.0,
        1,
        {},
    )


@pytest.mark.parametrize(
    ("reply", "code"),
    [
        (_reply("a", task="run-r1-eval"), ErrorCode.ROUND_CLOSED),
        (_reply("z"), ErrorCode.NOT_ASSIGNED),
        (_reply("a", sigma=ASKED - 0.5), ErrorCode.INVALID_UPDATE),
    ],
)
def test_answers_that_do_not_fit_are_refused(reply: EvaluationReply, code: ErrorCode) -> None:
    with pytest.raises(FederationError) as refused:
        _phase().accept(reply, ASKED)
    assert refused.value.code is code


def test_one_answer_per_silo_and_the_figures_name_who_is_not_covered() -> None:
    phase = _phase()
    assert phase.accept(_reply("a", sigma=ASKED + 1), ASKED) is not None
    with pytest.raises(FederationError) as again:
        phase.accept(_reply("a"), ASKED)
    assert again.value.code is ErrorCode.DUPLICATE_UPDATE
    assert phase.accept(_reply("b", sums=None), ASKED) is None
    assert phase.pending == {"c"}
    outcome = phase.outcome(FEDERATION)
    assert (outcome.silos_released, outcome.silos_asked, outcome.declined) == (1, 3, ("b", "c"))
    assert (outcome.accuracy, outcome.loss) == (4.0 / 6.0, 3.0 / 6.0)
    assert outcome.releases[0].noise_multiplier == ASKED + 1
