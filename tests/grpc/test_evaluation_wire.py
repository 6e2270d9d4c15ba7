"""Evaluation tasks and replies over the wire: sums, refusals, and what a malformed reply is."""

from __future__ import annotations

import math

import pytest

from aslora_core.federated_evaluation import EvaluationSums
from aslora_rpc.enum_wire import WireError
from aslora_rpc.messages import EvaluationReply, Task
from aslora_rpc.transfer import PayloadInfo
from aslora_rpc.wire import (
    evaluation_reply_from_proto,
    evaluation_reply_to_proto,
    task_from_proto,
    task_to_proto,
)


def test_an_evaluation_task_round_trips() -> None:
    task = Task(
        task_id="run-e3",
        round_index=3,
        selection={},
        noise_multiplier=20.0,
        sample_rate=1.0,
        local_steps=1,
        adapter=PayloadInfo(size_bytes=10, sha256=b"\x01" * 32),
        seconds_to_deadline=5.0,
        evaluate=True,
    )
    assert task_from_proto(task_to_proto(task)) == task


@pytest.mark.parametrize(
    "reply",
    [
        EvaluationReply("a", "run-e3", EvaluationSums(12.5, -3.25, 40.0), "", 20.0, 1.5),
        EvaluationReply("a", "run-e3", None, "this silo releases no evaluation", 0.0, 1.5),
    ],
)
def test_replies_round_trip(reply: EvaluationReply) -> None:
    assert evaluation_reply_from_proto(evaluation_reply_to_proto(reply)) == reply


def test_a_reply_needs_sums_or_a_reason_and_finite_sums() -> None:
    message = evaluation_reply_to_proto(
        EvaluationReply("a", "t", EvaluationSums(1.0, 1.0, 1.0), "", 1.0, 0.0)
    )
    message.ClearField("sums")
    with pytest.raises(WireError, match="sums or the reason"):
        evaluation_reply_from_proto(message)
    message.sums.loss_sum = math.nan
    with pytest.raises(WireError, match="finite"):
        evaluation_reply_from_proto(message)
