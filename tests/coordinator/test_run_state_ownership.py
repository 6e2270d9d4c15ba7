"""A run's state has one writer per part: outside code can read it, never assign it.

The orchestrator owns the outcome (global adapter, rounds completed), the run control the lifecycle
(state, reason, stop, suspension), the task board the open and unmasking rounds, the silo evaluations the
open evaluation and its latest figures: no other coordinator module assigns their fields or reads their
private ones."""

from __future__ import annotations

import ast
import time
from pathlib import Path

import pytest

from aslora_coordinator.orchestrator import Orchestrator
from aslora_coordinator.registry import SiloRegistry
from aslora_coordinator.run_control import RunControl
from aslora_coordinator.task_board import TaskBoard
from tests.core.payloads import sample_state
from tests.grpc.helpers import coordinator_tables, load_config, small_run_plan

COORDINATOR_DIR = Path(__file__).resolve().parents[2] / "coordinator"
OWNERS = {
    "orchestrator.py": "orchestrator",
    "run_control.py": "control",
    "task_board.py": "board",
    "silo_evaluations.py": "evaluations",
}
"""Each owning module, and the name its object goes by wherever other code holds it."""
RUN_STATE_FIELDS = (
    "state",
    "reason",
    "rounds_completed",
    "global_state",
    "current_round",
    "stop_requested",
    "ledger_budget",
)
CONTROL_FIELDS = ("state", "reason", "stop_requested", "suspended", "interrupted")
BOARD_FIELDS = ("open_round", "unmasking")
EVALUATION_FIELDS = ("latest",)
HEARTBEAT_TIMEOUT_SECONDS = 30.0


def _assert_read_only(owner: object, fields: tuple[str, ...]) -> None:
    for name in fields:
        value = getattr(owner, name)
        with pytest.raises(AttributeError):
            setattr(owner, name, value)


def test_run_state_fields_are_read_only(tiny_model_dir: Path, tmp_path: Path) -> None:
    config = load_config(tmp_path / "c.toml", coordinator_tables(tiny_model_dir))
    assert config.run is not None
    plan = small_run_plan(rounds=1, local_steps=1, test_mode=True)
    orchestrator = Orchestrator(config.run, config.service, plan, sample_state())
    _assert_read_only(orchestrator, RUN_STATE_FIELDS)
    _assert_read_only(orchestrator.evaluations, EVALUATION_FIELDS)
    _assert_read_only(RunControl(time.monotonic), CONTROL_FIELDS)
    _assert_read_only(TaskBoard(SiloRegistry(time.monotonic, HEARTBEAT_TIMEOUT_SECONDS)), BOARD_FIELDS)


def _writes(tree: ast.AST, owner: str) -> list[str]:
    """Assignments to `<...>owner.<field>` and reads of its private `_fields`, as source text."""
    found = []
    for node in ast.walk(tree):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        for target in targets:
            if isinstance(target, ast.Attribute) and ast.unparse(target.value).endswith(owner):
                found.append(ast.unparse(target))
        if (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and ast.unparse(node.value).endswith(owner)
        ):
            found.append(ast.unparse(node))
    return found


@pytest.mark.parametrize("module", sorted(OWNERS))
def test_no_code_outside_the_owner_writes_its_state(module: str) -> None:
    offenders = {
        path.name: writes
        for path in sorted(COORDINATOR_DIR.rglob("*.py"))
        if path.name != module and (writes := _writes(ast.parse(path.read_text()), OWNERS[module]))
    }
    assert offenders == {}


def test_the_scan_finds_a_write_and_a_private_read() -> None:
    source = (
        "self.orchestrator.global_state = s\nx = orchestrator._lock\norchestrator.rounds_completed += 1\n"
        "self._control.state = s\n"
    )
    assert sorted(_writes(ast.parse(source), "orchestrator")) == [
        "orchestrator._lock",
        "orchestrator.rounds_completed",
        "self.orchestrator.global_state",
    ]
    assert _writes(ast.parse(source), "control") == ["self._control.state"]
