"""Every plan of the learning studies, by the name `python -m bench.study` takes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bench.learning_plans import learning_bbc, learning_horizon, learning_sst2
from bench.study_plans import (
    PlannedRun,
    sst2_ceiling,
    sst2_curvature,
    sst2_estimator_choice,
    sst2_first,
    sst2_gpu_subset,
    sst2_selection,
    sst2_skewed,
)

PLANS: dict[str, Callable[[Path], list[PlannedRun]]] = {
    "sst2-first": lambda _folder: sst2_first(),
    "sst2-selection": lambda _folder: sst2_selection(),
    "sst2-ceiling": sst2_ceiling,
    "sst2-estimator-choice": lambda _folder: sst2_estimator_choice(),
    "sst2-dirichlet-0.1": lambda _folder: sst2_skewed(),
    "sst2-gpu-subset": lambda _folder: sst2_gpu_subset(),
    "sst2-curvature": lambda _folder: sst2_curvature(),
    "learning-sst2": lambda _folder: learning_sst2(),
    "learning-bbc": lambda _folder: learning_bbc(),
    "learning-horizon": lambda _folder: learning_horizon(),
}
