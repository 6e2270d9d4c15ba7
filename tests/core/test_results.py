"""The results file has one reader: a run read back from its JSON equals the run written, and what is not a
results file is refused with its name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aslora_core.results import RESULTS_FORMAT, ResultsError, RoundRecord, RunResult, read_results


def _run() -> RunResult:
    """A two-round run with every optional field of a record set in one round or the other."""
    rounds = [
        RoundRecord(
            round=index,
            accuracy=0.5 + 0.1 * index,
            loss=0.7 - 0.1 * index,
            epsilon=1.5 * (index + 1),
            b_fraction=1.0 - 0.5 * index,
            upload_bytes=4096 * (index + 1),
            statistics_bytes=256,
            aggregation_seconds=0.01,
            seconds=2.5,
            silos=["silo-0", "silo-1"],
            selection={"l0.q": "B", "l0.v": "A" if index else "B"},
            product_error=0.02 if index else None,
            perplexity=None if index else 3.2,
            scores={"l0.q": {"A": [0.1, 0.01], "B": [0.2, 0.02]}} if index else None,
        )
        for index in range(2)
    ]
    return RunResult(
        policy="aslora",
        score="hybrid",
        settings={"federation": {"policy": "aslora", "rounds": 2}, "lora": {"target_modules": ["query"]}},
        silo_examples={"silo-0": 40, "silo-1": 60},
        noise_multipliers={"silo-0": 1.1, "silo-1": 0.9},
        initial_accuracy=0.49,
        initial_loss=0.71,
        silo_epsilons={"silo-0": 2.9, "silo-1": 3.0},
        rounds=rounds,
        wall_seconds=12.5,
    )


def test_a_run_read_back_from_its_json_equals_the_run(tmp_path: Path) -> None:
    run = _run()
    assert RunResult.from_json(json.loads(json.dumps(run.to_json()))) == run
    run.write(tmp_path / "run.json")
    assert read_results(tmp_path / "run.json") == run


def test_the_derived_figures_are_recomputed_not_read() -> None:
    document = {**_run().to_json(), "epsilon": 99.0, "final_accuracy": 0.0}
    result = RunResult.from_json(document)
    assert (result.epsilon, result.final_accuracy) == (3.0, 0.6)


@pytest.mark.parametrize(
    ("text", "refusal"),
    [
        (json.dumps({"format": "something-else", "rounds": []}), "not a results file"),
        (json.dumps([RESULTS_FORMAT]), "not a results file"),
        (json.dumps({"format": RESULTS_FORMAT, "policy": "ffa"}), "malformed results"),
        ("{not json", "Expecting property name"),
    ],
)
def test_what_is_not_a_results_file_is_refused_by_name(tmp_path: Path, text: str, refusal: str) -> None:
    path = tmp_path / "other.json"
    path.write_text(text)
    with pytest.raises(ResultsError, match=refusal) as excinfo:
        read_results(path)
    assert str(path) in str(excinfo.value)


def test_a_record_with_an_unknown_field_is_refused() -> None:
    document = _run().to_json()
    document["rounds"][0]["surprise"] = 1
    with pytest.raises(ResultsError, match="surprise"):
        RunResult.from_json(document)
