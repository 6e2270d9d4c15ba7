"""The task travels in the run plan; configs accept it; a silo refuses a plan for another task."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from aslora_coordinator.service import CoordinatorService
from aslora_core.config import ConfigError, TaskName
from aslora_rpc import wire
from aslora_rpc.enum_wire import WireError
from aslora_rpc.messages import Enrollment
from aslora_rpc.protocol import PROTOCOL_VERSION
from aslora_silo.agent import SiloAgent
from aslora_silo.config import load_silo_config
from tests.grpc.helpers import (
    coordinator_tables,
    load_config,
    load_run_config,
    silo_privacy_toml,
    small_run_plan,
)
from tests.tasks.builders import write_instructions

PLAN = small_run_plan(rounds=4, local_steps=2, test_mode=False)


@pytest.fixture
def service(tiny_model_dir: Path, tmp_path: Path) -> Iterator[CoordinatorService]:
    """A sequence-classification coordinator in this process."""
    coordinator = CoordinatorService(
        load_config(tmp_path / "c.toml", coordinator_tables(tiny_model_dir)), tmp_path / "work", insecure=True
    )
    yield coordinator
    coordinator.shutdown()


@pytest.mark.parametrize("task", list(TaskName))
def test_the_task_survives_the_wire(task: TaskName) -> None:
    enrollment = Enrollment(PROTOCOL_VERSION, "silo-00", replace(PLAN, task=task))
    assert wire.enrollment_from_proto(wire.enrollment_to_proto(enrollment)).plan.task is task


def test_a_plan_without_a_task_is_sequence_classification_and_an_unknown_task_is_refused() -> None:
    message = wire.enrollment_to_proto(Enrollment(PROTOCOL_VERSION, "silo-00", PLAN))
    message.plan.task = ""
    assert wire.enrollment_from_proto(message).plan.task is TaskName.SEQUENCE_CLASSIFICATION
    message.plan.task = "speech-recognition"
    with pytest.raises(WireError, match="run plan is not usable"):
        wire.enrollment_from_proto(message)


def test_a_causal_lm_coordinator_takes_no_labels(tiny_model_dir: Path, tmp_path: Path) -> None:
    tables = coordinator_tables(tiny_model_dir)
    tables[""] = {"model_path": str(tiny_model_dir), "task": "causal-lm"}
    assert load_run_config(tmp_path / "c.toml", tables).label_names == ()
    tables[""] = {**tables[""], "labels": ["0", "1"]}
    with pytest.raises(ConfigError, match="causal-lm task has no class labels"):
        load_config(tmp_path / "c.toml", tables)


def test_the_silo_refuses_a_plan_for_another_task(
    service: CoordinatorService, tiny_model_dir: Path, tmp_path: Path
) -> None:
    data = write_instructions(tmp_path / "instructions.jsonl", 12)
    config = tmp_path / "silo.toml"
    config.write_text(
        f'model_path = "{tiny_model_dir}"\ntask = "causal-lm"\n[silo]\nname = "silo-b"\n'
        f'[coordinator]\naddress = "{service.server.endpoint}"\n'
        f'[data]\ntrain_path = "{data}"\nprompt_field = "prompt"\n[health]\nlisten = "127.0.0.1:0"\n'
        + silo_privacy_toml()
    )
    settings = load_silo_config(config)
    assert settings.task is TaskName.CAUSAL_LM
    assert load_silo_config(config, TaskName.IMAGE_CLASSIFICATION).task is TaskName.IMAGE_CLASSIFICATION
    agent = SiloAgent(settings, tmp_path / "silo-state", insecure=True)
    assert agent.dataset_size == 12
    end = agent.run(max_runs=1)
    assert end is not None
    assert "the run trains the sequence-classification task; this silo runs causal-lm" in end.reason
