"""The run's results JSON (the schema of `aslora simulate`), updated after every round."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from aslora_core.evaluation import Evaluation
from aslora_core.federated_evaluation import FederatedEvaluation
from aslora_core.results import RoundRecord, RunResult
from aslora_core.round_records import round_record
from aslora_core.rounds import RoundOutcome


class ResultsRecorder:
    """Accumulates one RunResult; writes it atomically after each round when a path is configured."""

    def __init__(self, policy: str, score: str | None, settings: dict[str, Any], path: Path | None) -> None:
        self.result = RunResult(
            policy=policy, score=score, settings=settings, silo_examples={}, noise_multipliers={}
        )
        self.path = path
        self._started = time.perf_counter()

    def restore(self, result: RunResult) -> None:
        """Continue a checkpointed run's results, its wall time carried on from what it had reached."""
        self.result = result
        self._started = time.perf_counter() - result.wall_seconds

    def elapsed_seconds(self) -> float:
        """Wall time of the run so far, summed over coordinator restarts."""
        return time.perf_counter() - self._started

    def to_json(self) -> dict[str, Any]:
        """The results so far as JSON (for a checkpoint), with the wall time up to now."""
        self.result.wall_seconds = self.elapsed_seconds()
        return self.result.to_json()

    def copy(self) -> RunResult:
        """The results so far, safe to read while the round driver records further rounds."""
        result = self.result
        return replace(
            result, rounds=list(result.rounds), federated_evaluations=list(result.federated_evaluations)
        )

    def record_initial(self, evaluation: Evaluation | None) -> None:
        """The evaluation of the initial adapter."""
        if evaluation is not None:
            self.result.initial_accuracy, self.result.initial_loss = evaluation.accuracy, evaluation.loss

    def record_round(
        self,
        outcome: RoundOutcome,
        traffic: tuple[int, int],
        evaluation: Evaluation,
        silos: Mapping[str, tuple[int, float, float]],
        round_seconds: float,
    ) -> RoundRecord:
        """Add one aggregated round; `traffic` is (upload bytes, of them the statistics' bytes) of the
        updates it aggregated, `silos` maps every silo to (examples, sigma, epsilon reported)."""
        self.result.silo_examples = {silo: values[0] for silo, values in silos.items()}
        self.result.noise_multipliers = {silo: values[1] for silo, values in silos.items()}
        self.result.silo_epsilons = {silo: values[2] for silo, values in silos.items()}
        record = round_record(
            outcome,
            evaluation,
            silo_epsilons=self.result.silo_epsilons,
            upload_bytes=traffic[0],
            statistics_bytes=traffic[1],
            seconds=round_seconds,
        )
        self.result.rounds.append(record)
        self.write()
        return record

    def record_federated(self, evaluation: FederatedEvaluation) -> None:
        """Add the silos' pooled evaluation of one round's adapter."""
        self.result.federated_evaluations.append(evaluation)
        self.write()

    def write(self) -> None:
        """Write the JSON now (a no-op without a configured path)."""
        self.result.wall_seconds = self.elapsed_seconds()
        if self.path is not None:
            self.result.write(self.path)
