"""Resumable learning studies: one JSON per run under bench/results/<plan>/, runs already done are skipped."""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aslora_core.config import (
    DataSettings,
    FederationSettings,
    HeadPooling,
    LoraSettings,
    PartitionSettings,
    PrivacySettings,
    ScoreSettings,
    SimulationSettings,
    TrainingSettings,
)
from aslora_core.simulation import run_simulation

REPO = Path(__file__).resolve().parents[1]
SST2 = REPO.parent / "shared" / "data" / "sst2"
RESULTS = REPO / "bench" / "results"
LOGGER = logging.getLogger("bench.study")


@dataclass(frozen=True)
class PlannedRun:
    """One run of a study: a file name and its settings."""

    name: str
    settings: SimulationSettings


# The DP regime for SST-2 with MiniLM (docs/results.md): a mean-pooling head without bias, clipped apart
# from the factors, chosen on a validation split carved from train.tsv, never on dev.tsv.
SST2_LORA = LoraSettings(head_pooling=HeadPooling.MEAN)
SST2_TRAINING = TrainingSettings(
    local_steps=3, batch_size=512, physical_batch_size=64, lr=4.0, head_lr=20.0, max_length=48
)
SST2_FACTOR_CLIP = 0.1
SST2_HEAD_CLIP = 0.5


def sst2_first() -> list[PlannedRun]:
    """SST-2, MiniLM, 5 silos, Dirichlet 0.5, epsilon 3: four policies, 2 seeds (about 1 h on 2 cores)."""
    runs = []
    for seed in (0, 1):
        for policy in ("aslora", "ffa", "rolora", "fedit"):
            settings = SimulationSettings(
                data=DataSettings(train_path=str(SST2 / "train.tsv"), eval_path=str(SST2 / "dev.tsv")),
                partition=PartitionSettings(silos=5, dirichlet_alpha=0.5),
                lora=SST2_LORA,
                privacy=PrivacySettings(
                    target_epsilon=3.0,
                    delta=1e-5,
                    clip_norm=SST2_FACTOR_CLIP,
                    head_clip_norm=SST2_HEAD_CLIP,
                    secure_noise=False,
                ),
                training=SST2_TRAINING,
                federation=FederationSettings(
                    policy=policy, rounds=6, seed=seed, score=ScoreSettings(estimator="norm")
                ),
            )
            runs.append(PlannedRun(name=f"{policy}-seed{seed}", settings=settings))
    return runs


PLANS: dict[str, Callable[[], list[PlannedRun]]] = {"sst2-first": sst2_first}


def run_plan(plan: str, results_dir: Path) -> None:
    """Run every planned run whose JSON is not there yet, writing each as soon as it ends."""
    folder = results_dir / plan
    for planned in PLANS[plan]():
        target = folder / f"{planned.name}.json"
        if target.exists():
            LOGGER.info("skip %s: already done", planned.name)
            continue
        started = time.perf_counter()
        result = run_simulation(planned.settings)
        result.write(target)
        LOGGER.info(
            "%s: accuracy %.4f epsilon %.3f in %.0fs",
            planned.name,
            result.final_accuracy or 0.0,
            result.epsilon,
            time.perf_counter() - started,
        )


def summarize(plan: str, results_dir: Path) -> str:
    """A markdown table: final accuracy mean and spread over seeds, epsilon and wall time, per policy."""
    by_policy: dict[str, list[dict[str, Any]]] = {}
    for path in sorted((results_dir / plan).glob("*.json")):
        document = json.loads(path.read_text())
        label = document["policy"] + (f" ({document['score']})" if document.get("score") else "")
        by_policy.setdefault(label, []).append(document)
    lines = [
        "| policy | runs | final accuracy (mean ± sd) | best round (mean) | epsilon | wall s (mean) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for label, documents in sorted(by_policy.items()):
        finals = [float(d["final_accuracy"]) for d in documents]
        bests = [max(float(r["accuracy"]) for r in d["rounds"]) for d in documents]
        epsilons = [float(d["epsilon"]) for d in documents]
        walls = [float(d["wall_seconds"]) for d in documents]
        spread = statistics.stdev(finals) if len(finals) > 1 else 0.0
        lines.append(
            f"| {label} | {len(documents)} | {statistics.mean(finals):.4f} ± {spread:.4f} | "
            f"{statistics.mean(bests):.4f} | {max(epsilons):.3f} | {statistics.mean(walls):.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    """Command line: run a plan (resumably) or only print its summary."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("plan", choices=sorted(PLANS))
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    parser.add_argument("--summary-only", action="store_true", help="print the table of finished runs")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if not args.summary_only:
        run_plan(args.plan, args.results_dir)
    print(summarize(args.plan, args.results_dir))


if __name__ == "__main__":
    main()
