"""The learning study's plans: the ceiling's dev run takes the learning rates that won on the validation
split, the estimator is chosen on that split too, the GPU subset repeats selection runs with the carried
inputs, a `--jobs` worker runs its share of the plan, the per-run table lists every round, and the paired
table compares seed by seed with the best fixed rule."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
import torch

from aslora_core.config import CurvatureSource
from aslora_core.results import RoundRecord, RunResult
from bench import study
from bench.study import RunOptions, Share
from bench.study_plans import (
    CEILING_GRID,
    GPU_EPSILONS,
    HEAD_TO_HEAD_RUNS,
    SCORE_ESTIMATORS,
    sst2_ceiling,
    sst2_curvature,
    sst2_estimator_choice,
    sst2_gpu_subset,
    sst2_selection,
)
from bench.study_tables import curvature_tables, paired_table, per_run_table
from tests.bench.study_results import write_result


def test_the_ceiling_runs_on_dev_with_the_rates_that_won_on_validation(tmp_path: Path) -> None:
    planned = sst2_ceiling(tmp_path)
    assert len(planned) == len(CEILING_GRID), "no dev run before every validation run has ended"
    assert all(run.settings.data.eval_path is None for run in planned), "validation carved from train"
    accuracies = [0.70 + 0.01 * index for index in range(len(planned))]
    accuracies[1] = 0.83
    for run, accuracy in zip(planned, accuracies, strict=True):
        write_result(tmp_path / f"{run.name}.json", [accuracy])
    *_, dev = sst2_ceiling(tmp_path)
    point = CEILING_GRID[accuracies.index(max(accuracies))]
    assert dev.name == f"dev-{point.tag}-seed0"
    training = dev.settings.training
    assert (training.lr, training.head_lr, training.lr_schedule) == (point.lr, point.head_lr, point.schedule)
    assert dev.settings.data.eval_path is not None and dev.settings.data.eval_path.endswith("dev.tsv")
    assert not dev.settings.privacy.private


def test_the_estimator_is_chosen_on_the_validation_split_never_on_dev() -> None:
    planned = sst2_estimator_choice()
    assert all(run.settings.data.eval_path is None for run in planned), "validation carved from train"
    assert {run.settings.federation.score.estimator for run in planned} == set(SCORE_ESTIMATORS)
    assert all(run.settings.privacy.target_epsilon == 3.0 for run in planned)


def test_a_jobs_worker_runs_every_jobs_th_matching_run_on_its_share_of_the_cores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    patterns: list[str | None] = []
    threads: list[int] = []
    monkeypatch.setattr(study, "run_plan", lambda plan, folder, *, pattern, options: patterns.append(pattern))
    monkeypatch.setattr(torch, "set_num_threads", threads.append)
    study._run_share(Share("sst2-first", tmp_path, "seed0", RunOptions(), job=1, jobs=2))
    (pattern,) = patterns
    assert pattern == "^(ffa\\-seed0|fedit\\-seed0)$"
    assert threads == [max(1, (os.cpu_count() or 1) // 2)], "each worker takes its share of the cores"


def test_the_gpu_subset_repeats_selection_runs_on_the_carried_model_and_data_on_the_device() -> None:
    subset = sst2_gpu_subset()
    selection = {run.name: run.settings for run in sst2_selection()}
    assert len(subset) == len(GPU_EPSILONS) * len(HEAD_TO_HEAD_RUNS) * 3, "3 seeds"
    assert all(selection[run.name] == run.settings for run in subset), "the same settings under the same name"
    carry = Path("/carry")
    options = RunOptions(device="cuda", physical_batch=1024, model=carry / "model", sst2=carry / "sst2")
    settings = options.apply(subset[0])
    compute = settings.compute
    assert (compute.device, compute.physical_batch_size) == ("cuda", 1024)
    assert settings.model_path == "/carry/model"
    data = settings.data
    assert (data.train_path, data.eval_path) == ("/carry/sst2/train.tsv", "/carry/sst2/dev.tsv")
    assert RunOptions().apply(subset[0]) == subset[0].settings, "by default the planned settings as they are"


def test_the_per_run_table_has_a_row_per_finished_run_with_every_round(tmp_path: Path) -> None:
    folder = tmp_path / "plan"
    folder.mkdir()
    write_result(
        folder / "eps3-ffa-seed0.json", [0.5, 0.75], b_fractions=[1.0, 0.5], epsilon=2.999, wall_seconds=61.2
    )
    header, _, row = per_run_table("plan", tmp_path).splitlines()
    assert header.startswith("| run |")
    assert row == "| eps3-ffa-seed0 | 0.500, 0.750 | 0.750 | 1.00, 0.50 | 2.999 | 61 |"


def test_the_paired_table_subtracts_the_best_fixed_rule_seed_by_seed(tmp_path: Path) -> None:
    folder = tmp_path / "plan"
    folder.mkdir()
    finals = {
        "eps3-ffa": (0.70, 0.80),
        "eps3-rolora": (0.75, 0.79),
        "eps3-aslora-hybrid": (0.76, 0.83),
        "eps1-ffa": (0.60,),
        "centralized": (0.90,),
    }
    for group, accuracies in finals.items():
        for seed, accuracy in enumerate(accuracies):
            write_result(folder / f"{group}-seed{seed}.json", [accuracy])
    rows = {line.split(" | ")[0][2:]: line for line in paired_table("plan", tmp_path).splitlines()[2:]}
    assert set(rows) == {"eps1-ffa", "eps3-aslora-hybrid", "eps3-ffa", "eps3-rolora"}, "private groups only"
    assert rows["eps3-aslora-hybrid"] == (
        "| eps3-aslora-hybrid | eps3-rolora | 2 | +0.0250 ± 0.0212 | +0.010, +0.040 |"
    ), "rolora's mean (0.77) beats ffa's (0.75); the differences are taken per seed"
    assert rows["eps1-ffa"] == "| eps1-ffa | eps1-ffa | 1 | +0.0000 ± n/a | +0.000 |"


def test_the_curvature_table_maps_the_trained_factors_estimate_per_layer_and_round(tmp_path: Path) -> None:
    """Runs that recorded curvature get a layer x round table of the trained factor's estimate, starred
    where the score used it, and the share estimated per round; other runs get none."""
    folder = tmp_path / "plan"
    folder.mkdir()
    write_result(folder / "eps3-ffa-seed0.json", [0.5])
    layer = "encoder.layer.3.attention.self.query"
    rounds = [
        RoundRecord(
            round=index,
            accuracy=0.5,
            loss=1.0,
            epsilon=1.0,
            b_fraction=1.0,
            upload_bytes=0,
            statistics_bytes=0,
            aggregation_seconds=0.0,
            seconds=0.0,
            silos=["silo-0"],
            selection={layer: choice},
            curvature={layer: {"A": [None, None, None], "B": [used, 0.0123, 0.001]}},
            curvature_share=share,
        )
        for index, (choice, used, share) in enumerate(
            [("B", None, 0.0), ("B", 0.0123, 1.0), ("A", 0.0123, 0.5)]
        )
    ]
    RunResult(
        policy="aslora", score="hybrid", settings={}, silo_examples={}, noise_multipliers={}, rounds=rounds
    ).write(folder / "eps3-aslora-seed0.json")
    title, _, header, _, row, share = curvature_tables("plan", tmp_path).splitlines()
    assert title.startswith("eps3-aslora-seed0:")
    assert header == "| layer | 0 | 1 | 2 |"
    assert row == "| 3.query | 0.0123 | 0.0123* | - |"
    assert share == "| share estimated | 0.00 | 1.00 | 0.50 |"


def test_the_curvature_pair_differs_only_in_where_the_curvature_comes_from() -> None:
    estimated, constant = sst2_curvature()
    assert estimated.settings.federation.score.curvature is CurvatureSource.ESTIMATED
    assert constant.settings.federation.score.curvature is CurvatureSource.CONSTANT
    score = dataclasses.replace(estimated.settings.federation.score, curvature=CurvatureSource.CONSTANT)
    federation = dataclasses.replace(estimated.settings.federation, score=score)
    assert dataclasses.replace(estimated.settings, federation=federation) == constant.settings
