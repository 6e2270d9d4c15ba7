"""Resumable learning studies: one JSON per run under bench/results/<plan>/, runs already done are skipped."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import multiprocessing
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from aslora_core.config import SimulationSettings
from aslora_core.simulation import run_simulation
from bench.plans import PLANS
from bench.study_plans import REPO, PlannedRun, relocated
from bench.study_tables import study_tables

RESULTS = REPO / "bench" / "results"
LOGGER = logging.getLogger("bench.study")


def _selected(plan: str, results_dir: Path, pattern: str | None) -> list[PlannedRun]:
    runs = PLANS[plan](results_dir / plan)
    return runs if pattern is None else [r for r in runs if re.search(pattern, r.name)]


@dataclass(frozen=True)
class RunOptions:
    """Where every run of a sitting computes and reads its inputs: the torch device, its physical chunk
    of the logical batch (None: the plan's), and the model and SST-2 folders (None: the defaults; a device
    machine has no ../shared). None of them changes what a run computes beyond float rounding: each
    per-sample gradient is clipped on its own, whatever chunk it is computed in."""

    device: str = "cpu"
    physical_batch: int | None = None
    model: Path | None = None
    sst2: Path | None = None

    def apply(self, planned: PlannedRun) -> SimulationSettings:
        """The planned run's settings on this device with these inputs."""
        settings = relocated(planned.settings, model=self.model, sst2=self.sst2)
        compute = dataclasses.replace(
            settings.compute,
            device=self.device,
            physical_batch_size=self.physical_batch or settings.compute.physical_batch_size,
        )
        return dataclasses.replace(settings, compute=compute)


def run_plan(plan: str, results_dir: Path, *, pattern: str | None = None, options: RunOptions) -> None:
    """Run every planned run (whose name matches `pattern`) whose JSON is not there yet, writing each as
    soon as it ends; the plan is read again after each run, since a plan may add runs once others end."""
    folder = results_dir / plan
    while True:
        pending = [
            planned
            for planned in _selected(plan, results_dir, pattern)
            if not (folder / f"{planned.name}.json").exists()
        ]
        if not pending:
            return
        planned = pending[0]
        started = time.perf_counter()
        result = run_simulation(options.apply(planned))
        result.write(folder / f"{planned.name}.json")
        LOGGER.info(
            "%s: accuracy %.4f epsilon %.3f in %.0fs",
            planned.name,
            result.final_accuracy or 0.0,
            result.epsilon,
            time.perf_counter() - started,
        )


@dataclass(frozen=True)
class Share:
    """What one `--jobs` worker runs: every `jobs`-th matching run of the plan, from the `job`-th."""

    plan: str
    results_dir: Path
    pattern: str | None
    options: RunOptions
    job: int
    jobs: int


def _run_share(share: Share) -> None:
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s job{share.job}: %(message)s", force=True)
    # The cores are shared out: workers whose thread pools together exceed the cores wait on each other's
    # descheduled threads at every parallel region (seen here: four to ten times slower, not half as fast).
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // share.jobs))
    names = [r.name for r in _selected(share.plan, share.results_dir, share.pattern)][share.job :: share.jobs]
    if names:
        pattern = "^(" + "|".join(map(re.escape, names)) + ")$"
        run_plan(share.plan, share.results_dir, pattern=pattern, options=share.options)


def main() -> None:
    """Command line: run a plan (resumably, optionally in parallel processes) and print its tables."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("plan", choices=sorted(PLANS))
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    parser.add_argument("--only", default=None, help="regular expression: run only the matching run names")
    parser.add_argument("--device", default="cpu", help="torch device of every run (cuda on a GPU machine)")
    parser.add_argument("--physical-batch", type=int, default=None, help="records per forward (memory)")
    parser.add_argument("--model", type=Path, default=None, help="model folder (default: MiniLM's package)")
    parser.add_argument("--sst2", type=Path, default=None, help="folder of train.tsv and dev.tsv")
    parser.add_argument("--jobs", type=int, default=1, help="parallel processes (e.g. sharing one GPU)")
    parser.add_argument("--summary-only", action="store_true", help="print the tables of finished runs")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", force=True)
    options = RunOptions(args.device, args.physical_batch, args.model, args.sst2)
    if not args.summary_only:
        if args.jobs == 1:
            run_plan(args.plan, args.results_dir, pattern=args.only, options=options)
        else:
            context = multiprocessing.get_context("spawn")
            workers = [
                context.Process(
                    target=_run_share,
                    args=(Share(args.plan, args.results_dir, args.only, options, job, args.jobs),),
                )
                for job in range(args.jobs)
            ]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
    print(study_tables(args.plan, args.results_dir))


if __name__ == "__main__":
    main()
