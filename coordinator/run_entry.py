"""One run submitted to the federation: its settings as submitted, where it stands, and its times."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aslora_rpc.messages import RunState


@dataclass(frozen=True)
class RunEntry:
    """A submitted run as the run queue keeps it (and writes it to the state folder)."""

    run_id: str
    source: str
    """Where the run's settings came from (a file name), for messages."""
    settings: dict[str, Any] = field(compare=False)
    """The run's TOML keys as submitted; read again into a RunConfig when the run starts or resumes."""
    policy: str
    task: str
    rounds_total: int
    submitted_at: float
    """Seconds since the Unix epoch."""
    state: RunState = RunState.QUEUED
    reason: str = ""
    rounds_completed: int = 0
    epsilon_spent: float = 0.0
    """The largest epsilon the coordinator recomputes for any silo of the run."""
    started_at: float | None = None
    ended_at: float | None = None
    wall_seconds: float = 0.0
    """Time the run was active, summed over coordinator restarts."""

    def to_json(self) -> dict[str, Any]:
        """The entry as JSON (the run queue's file)."""
        return {
            "run_id": self.run_id,
            "source": self.source,
            "settings": self.settings,
            "policy": self.policy,
            "task": self.task,
            "rounds_total": self.rounds_total,
            "submitted_at": self.submitted_at,
            "state": self.state.value,
            "reason": self.reason,
            "rounds_completed": self.rounds_completed,
            "epsilon_spent": self.epsilon_spent,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "wall_seconds": self.wall_seconds,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunEntry:
        """The entry `to_json` wrote; KeyError, TypeError or ValueError when malformed."""
        return cls(
            run_id=str(data["run_id"]),
            source=str(data["source"]),
            settings=dict(data["settings"]),
            policy=str(data["policy"]),
            task=str(data["task"]),
            rounds_total=int(data["rounds_total"]),
            submitted_at=float(data["submitted_at"]),
            state=RunState(data["state"]),
            reason=str(data["reason"]),
            rounds_completed=int(data["rounds_completed"]),
            epsilon_spent=float(data["epsilon_spent"]),
            started_at=None if data["started_at"] is None else float(data["started_at"]),
            ended_at=None if data["ended_at"] is None else float(data["ended_at"]),
            wall_seconds=float(data["wall_seconds"]),
        )
