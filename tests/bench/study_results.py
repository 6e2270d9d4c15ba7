"""Results files of made-up runs, for the study tables' tests."""

from __future__ import annotations

from pathlib import Path

from aslora_core.results import RoundRecord, RunResult

LayerScores = dict[str, dict[str, list[float]]]
"""A round's scores as a results file holds them: layer -> factor -> [mean, standard error]."""


def write_result(
    path: Path,
    accuracies: list[float],
    *,
    b_fractions: list[float] | None = None,
    epsilon: float = 3.0,
    wall_seconds: float = 1.0,
    selections: list[dict[str, str]] | None = None,
    product_errors: list[float] | None = None,
    scores: list[LayerScores] | None = None,
) -> None:
    """A results file of a run whose rounds reached `accuracies` (and trained B on `b_fractions`, the
    layers' factors `selections`, reported `product_errors` and the layers' `scores`)."""
    fractions = b_fractions or [1.0] * len(accuracies)
    chosen = selections or [{} for _ in accuracies]
    errors: list[float | None] = list(product_errors) if product_errors else [None] * len(accuracies)
    scored: list[LayerScores | None] = list(scores) if scores else [None] * len(accuracies)
    rounds = [
        RoundRecord(
            round=index,
            accuracy=accuracy,
            loss=1.0,
            epsilon=epsilon,
            b_fraction=fraction,
            upload_bytes=0,
            statistics_bytes=0,
            aggregation_seconds=0.0,
            seconds=0.0,
            silos=["silo-0"],
            selection=selection,
            product_error=error,
            scores=score,
        )
        for index, (accuracy, fraction, selection, error, score) in enumerate(
            zip(accuracies, fractions, chosen, errors, scored, strict=True)
        )
    ]
    settings = {"privacy": {"target_epsilon": epsilon}}
    RunResult(
        policy="ffa",
        score=None,
        settings=settings,
        silo_examples={"silo-0": 1},
        noise_multipliers={"silo-0": 1.0},
        silo_epsilons={"silo-0": epsilon},
        rounds=rounds,
        wall_seconds=wall_seconds,
    ).write(path)
