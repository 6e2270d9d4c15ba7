"""The learning study's comparison tables: against LA-LoRA and with smoothing against without, seed by
seed, the selections' switch counts, and the tables a plan prints."""

from __future__ import annotations

from pathlib import Path

from bench.study_tables import (
    paired_against_table,
    product_error_table,
    score_ratio_table,
    smoothing_table,
    study_tables,
    switch_table,
)
from tests.bench.study_results import write_result


def _write_finals(folder: Path, finals: dict[str, tuple[float, ...]]) -> None:
    """One single-round results file per group and seed, at the given final accuracies."""
    folder.mkdir()
    for group, accuracies in finals.items():
        for seed, accuracy in enumerate(accuracies):
            write_result(folder / f"{group}-seed{seed}.json", [accuracy])


def _rows(table: str) -> dict[str, str]:
    return {line.split(" | ")[0][2:]: line for line in table.splitlines()[2:]}


def test_the_table_against_lalora_pairs_every_group_with_lalora_at_its_epsilon(tmp_path: Path) -> None:
    _write_finals(
        tmp_path / "plan",
        {
            "eps3-lalora": (0.70, 0.80),
            "eps3-aslora-hybrid": (0.75, 0.79),
            "eps1-ffa": (0.60,),
        },
    )
    rows = _rows(paired_against_table("plan", tmp_path, "lalora"))
    assert set(rows) == {"eps3-aslora-hybrid", "eps3-lalora"}, "epsilon 1 has no lalora runs"
    assert rows["eps3-aslora-hybrid"] == (
        "| eps3-aslora-hybrid | eps3-lalora | 2 | +0.0200 ± 0.0424 | +0.050, -0.010 |"
    )


def test_the_smoothing_table_subtracts_the_same_runs_without_smoothing(tmp_path: Path) -> None:
    _write_finals(
        tmp_path / "plan",
        {
            "eps3-ffa": (0.70, 0.80, 0.75),
            "eps3-ffa-laplacian": (0.72, 0.79),
            "eps3-lalora-laplacian": (0.70,),
        },
    )
    rows = _rows(smoothing_table("plan", tmp_path))
    assert set(rows) == {"eps3-ffa-laplacian"}, "a smoothed group without its plain one has no row"
    assert rows["eps3-ffa-laplacian"] == (
        "| eps3-ffa-laplacian | eps3-ffa | 2 | +0.0050 ± 0.0212 | +0.020, -0.010 |"
    ), "only the seeds both ran"


def test_the_switch_table_counts_factor_changes_per_layer_between_rounds(tmp_path: Path) -> None:
    folder = tmp_path / "plan"
    folder.mkdir()
    rounds = [{"q": "B", "v": "B"}, {"q": "A", "v": "B"}, {"q": "B", "v": "A"}]
    write_result(folder / "eps3-aslora-hybrid-seed0.json", [0.5] * 3, selections=rounds)
    write_result(folder / "eps3-aslora-hybrid-seed1.json", [0.5] * 3, selections=[{"q": "B", "v": "B"}] * 3)
    write_result(folder / "eps3-lalora-seed0.json", [0.5] * 3, selections=[{"q": "AB", "v": "AB"}] * 3)
    rows = _rows(switch_table("plan", tmp_path))
    assert set(rows) == {"eps3-aslora-hybrid"}, "a policy training both factors has no switches to count"
    assert rows["eps3-aslora-hybrid"] == "| eps3-aslora-hybrid | 2 | 1.5 | 1.0 | 1.0 | 6 |", (
        "seed 0: q switches twice, v once, two layer-rounds on A in two layers; seed 1: none"
    )


def test_the_product_error_table_lists_the_groups_that_report_one(tmp_path: Path) -> None:
    folder = tmp_path / "plan"
    folder.mkdir()
    write_result(folder / "eps3-lalora-seed0.json", [0.5, 0.6], product_errors=[0.02, 0.01])
    write_result(folder / "eps3-lalora-seed1.json", [0.5, 0.6], product_errors=[0.04, 0.02])
    write_result(folder / "eps3-ffa-seed0.json", [0.5, 0.6])
    rows = _rows(product_error_table("plan", tmp_path))
    assert rows == {"eps3-lalora": "| eps3-lalora | 2 | 0.0300 | 0.0150 |"}, "ffa reports none"


def test_the_score_table_compares_a_with_b_per_round_and_finds_a_s_largest_lead(tmp_path: Path) -> None:
    folder = tmp_path / "plan"
    folder.mkdir()
    first = {"q": {"A": [1.0, 0.3], "B": [4.0, 0.4]}, "v": {"A": [3.0, 0.3], "B": [2.0, 0.4]}}
    second = {"q": {"A": [2.0, 0.0], "B": [4.0, 0.0]}, "v": {"A": [1.0, 0.0], "B": [0.0, 0.0]}}
    write_result(folder / "eps3-aslora-hybrid-seed0.json", [0.5, 0.6], scores=[first, second])
    write_result(folder / "eps3-ffa-seed0.json", [0.5, 0.6])
    rows = _rows(score_ratio_table("plan", tmp_path))
    assert rows == {"eps3-aslora-hybrid": "| eps3-aslora-hybrid | 1 | 0.88, 0.50 | 1.50, 0.50 | 2.00 |"}, (
        "round 1: ratios 0.25 and 1.5; round 2: v's B is not positive, so only q's 0.5; the lead of v in "
        "round 1 is (3 - 2) / 0.5, and round 2 has no standard errors"
    )


def test_a_plan_prints_only_the_tables_that_have_rows(tmp_path: Path) -> None:
    _write_finals(tmp_path / "plan", {"eps3-ffa": (0.70,), "eps3-ffa-laplacian": (0.72,)})
    printed = study_tables("plan", tmp_path)
    assert "| eps3-ffa-laplacian | eps3-ffa | 1 | +0.0200 ± n/a | +0.020 |" in printed
    assert "| eps3-ffa | 1 | 0.7000 ± n/a |" in printed, "one seed has no standard deviation"
    assert "| lalora |" not in printed, "no LA-LoRA runs, so no table against them"
    assert "switches per run" not in printed, "no run recorded a selection"


def test_a_longer_horizon_is_paired_only_within_its_own_rounds(tmp_path: Path) -> None:
    _write_finals(
        tmp_path / "plan",
        {
            "eps3-ffa": (0.70, 0.70),
            "eps3-lalora": (0.60, 0.60),
            "eps3-30rounds-ffa": (0.80, 0.78),
            "eps3-30rounds-lalora": (0.75, 0.74),
            "eps3-30rounds-aslora-hybrid": (0.79, 0.70),
        },
    )
    rows = _rows(paired_against_table("plan", tmp_path, "lalora"))
    assert rows["eps3-30rounds-aslora-hybrid"] == (
        "| eps3-30rounds-aslora-hybrid | eps3-30rounds-lalora | 2 | +0.0000 ± 0.0566 | +0.040, -0.040 |"
    ), "the 30-round group is compared with the 30-round LA-LoRA, not the 6-round one of its epsilon"
    assert rows["eps3-ffa"].split(" | ")[1] == "eps3-lalora"
