"""The orchestrator is the one writer of a run's state: outside code can read it, never assign it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from aslora_coordinator.orchestrator import Orchestrator
from tests.core.payloads import sample_state
from tests.grpc.helpers import coordinator_tables, load_config, small_run_plan

COORDINATOR_DIR = Path(__file__).resolve().parents[2] / "coordinator"
OWNER = "orchestrator.py"
RUN_STATE_FIELDS = (
    "state",
    "reason",
    "rounds_completed",
    "global_state",
    "current_round",
    "stop_requested",
    "ledger_budget",
)


def test_run_state_fields_are_read_only(tiny_model_dir: Path, tmp_path: Path) -> None:
    config = load_config(tmp_path / "c.toml", coordinator_tables(tiny_model_dir))
    assert config.run is not None
    plan = small_run_plan(rounds=1, local_steps=1, test_mode=True)
    orchestrator = Orchestrator(config.run, config.service, plan, sample_state())
    for name in RUN_STATE_FIELDS:
        value = getattr(orchestrator, name)
        with pytest.raises(AttributeError):
            setattr(orchestrator, name, value)


def _orchestrator_writes(tree: ast.AST) -> list[str]:
    """Assignments to `<...>orchestrator.<field>` and reads of its private `_fields`, as source text."""
    found = []
    for node in ast.walk(tree):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        for target in targets:
            if isinstance(target, ast.Attribute) and ast.unparse(target.value).endswith("orchestrator"):
                found.append(ast.unparse(target))
        if (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and ast.unparse(node.value).endswith("orchestrator")
        ):
            found.append(ast.unparse(node))
    return found


def test_no_code_outside_the_orchestrator_writes_its_state() -> None:
    offenders = {
        path.name: writes
        for path in sorted(COORDINATOR_DIR.rglob("*.py"))
        if path.name != OWNER and (writes := _orchestrator_writes(ast.parse(path.read_text())))
    }
    assert offenders == {}


def test_the_scan_finds_a_write_and_a_private_read() -> None:
    source = (
        "self.orchestrator.global_state = s\nx = orchestrator._lock\norchestrator.rounds_completed += 1\n"
    )
    assert sorted(_orchestrator_writes(ast.parse(source))) == [
        "orchestrator._lock",
        "orchestrator.rounds_completed",
        "self.orchestrator.global_state",
    ]
