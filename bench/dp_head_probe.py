"""DP-SGD on a linear head over frozen MiniLM mean-pooled features, federated across label-skewed silos.

A fast stand-in for the first rounds of a federated run (LoRA's B starts at zero, so the model starts as
the frozen encoder plus the head): which head settings learn under DP at all. Features of a seeded subset
of SST-2's train.tsv; the evaluation split is carved from train.tsv too, never dev.tsv.

`python -m bench.dp_head_probe` (features once, about 3 minutes on 2 cores, cached under --cache)
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from aslora_core.adapters import default_model_path, load_base_classifier
from aslora_core.config import AccountantKind, DataSettings, HeadPooling, TaskName
from aslora_core.data import partition_dirichlet
from aslora_core.pooled_classifier import MeanPooledClassifier
from aslora_core.privacy.analysis import noise_multiplier_for
from aslora_core.simulation import load_records
from aslora_core.tasks import make_task

SST2_TRAIN = Path(__file__).resolve().parents[2] / "shared" / "data" / "sst2" / "train.tsv"
FULL_TRAIN = 53_879
"""train.tsv records left after the 20% validation carve: silos' sampling rates are those of the full set."""
FEATURE_RECORDS = 20_000
EVAL_RECORDS = 2_000
MAX_LENGTH = 48
SILOS, ALPHA, EPSILON, DELTA, BATCH = 5, 0.5, 3.0, 1e-5, 512
ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8
SEEDS = (0, 1, 2)


@dataclass(frozen=True)
class HeadRegime:
    """One way to train the head: learning rate, clip norm, bias or not, SGD or Adam, run length."""

    lr: float
    clip: float
    bias: bool
    adam: bool = False
    rounds: int = 6
    steps: int = 3


REGIMES = (
    HeadRegime(lr=4, clip=0.5, bias=True),
    HeadRegime(lr=20, clip=0.5, bias=True),
    HeadRegime(lr=40, clip=0.5, bias=True, rounds=18, steps=1),
    HeadRegime(lr=0.1, clip=0.5, bias=True, adam=True),
    HeadRegime(lr=20, clip=0.5, bias=False),
    HeadRegime(lr=40, clip=0.5, bias=False),
)


@torch.no_grad()
def features(cache: Path) -> dict[str, np.ndarray]:
    """Unit-normalised mean-pooled features and labels of the subset and the validation split."""
    if cache.exists():
        return dict(np.load(cache))
    train, validation = load_records(
        make_task(TaskName.SEQUENCE_CLASSIFICATION),
        DataSettings(train_path=str(SST2_TRAIN), max_eval_examples=EVAL_RECORDS),
        seed=0,
    )
    rng = np.random.default_rng(0)
    train = train.subset(np.sort(rng.choice(len(train), FEATURE_RECORDS, replace=False)))
    path = default_model_path()
    task = make_task(TaskName.SEQUENCE_CLASSIFICATION)
    model = load_base_classifier(path, 2, HeadPooling.MEAN)
    assert isinstance(model, MeanPooledClassifier)
    model.eval()
    arrays: dict[str, np.ndarray] = {}
    for name, records in (("train", train), ("validation", validation)):
        encoded = task.encode(records, path, MAX_LENGTH)
        pooled = []
        for start in range(0, len(encoded), 256):
            batch = encoded.batch(list(range(start, min(start + 256, len(encoded)))))
            labels = batch.pop("labels")
            del labels
            hidden = model.encoder(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).float()
            pooled.append(torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy())
        arrays[f"x_{name}"] = np.concatenate(pooled)
        arrays[f"y_{name}"] = encoded.tensors["labels"].numpy()
    np.savez(
        cache,
        x_train=arrays["x_train"],
        y_train=arrays["y_train"],
        x_validation=arrays["x_validation"],
        y_validation=arrays["y_validation"],
    )
    return arrays


def federate(data: dict[str, np.ndarray], regime: HeadRegime, seed: int) -> list[float]:
    """Validation accuracy after each round of DP-SGD on the head, FedAvg over Dirichlet silos."""
    x, y, xv, yv = data["x_train"], data["y_train"], data["x_validation"], data["y_validation"]
    if regime.bias:
        x = np.hstack([x, np.ones((len(x), 1))])
        xv = np.hstack([xv, np.ones((len(xv), 1))])
    parts = partition_dirichlet(y, SILOS, ALPHA, seed)
    rng = np.random.default_rng(seed + 100)
    # The subset stands in for the full set: its expected batch and noise are scaled down alike.
    shrink = len(x) / FULL_TRAIN
    batch = BATCH * shrink
    sigmas = [
        noise_multiplier_for(
            EPSILON,
            DELTA,
            min(1.0, BATCH / (len(p) / shrink)),
            regime.rounds * regime.steps,
            AccountantKind.RDP,
        )
        for p in parts
    ]
    weights = np.zeros((x.shape[1], 2))
    accuracies = []
    for _ in range(regime.rounds):
        local = []
        for part, sigma in zip(parts, sigmas, strict=True):
            w = weights.copy()
            first, second = np.zeros_like(w), np.zeros_like(w)
            for step in range(regime.steps):
                chosen = part[rng.random(len(part)) < min(1.0, batch / len(part))]
                logits = x[chosen] @ w
                probabilities = np.exp(logits - logits.max(1, keepdims=True))
                probabilities /= probabilities.sum(1, keepdims=True)
                probabilities[np.arange(len(chosen)), y[chosen]] -= 1
                norms = np.linalg.norm(x[chosen], axis=1) * np.linalg.norm(probabilities, axis=1)
                scale = np.minimum(1.0, regime.clip / (norms + 1e-6))
                gradient = (x[chosen] * scale[:, None]).T @ probabilities
                gradient += rng.normal(0.0, sigma * regime.clip * np.sqrt(shrink), gradient.shape)
                gradient /= batch
                if regime.adam:
                    first = ADAM_BETAS[0] * first + (1 - ADAM_BETAS[0]) * gradient
                    second = ADAM_BETAS[1] * second + (1 - ADAM_BETAS[1]) * gradient**2
                    corrected = first / (1 - ADAM_BETAS[0] ** (step + 1))
                    w -= (
                        regime.lr
                        * corrected
                        / (np.sqrt(second / (1 - ADAM_BETAS[1] ** (step + 1))) + ADAM_EPS)
                    )
                else:
                    w -= regime.lr * gradient
            local.append(w)
        sizes = np.array([len(p) for p in parts], dtype=float)
        weights = sum(w * n for w, n in zip(local, sizes, strict=True)) / sizes.sum()
        accuracies.append(float(((xv @ weights).argmax(1) == yv).mean()))
    return accuracies


def main() -> None:
    """Every regime over three seeds: mean validation accuracy per round, and the spread of the last."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cache", type=Path, default=Path("results/sst2-minilm-mean-features.npz"))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    args.cache.parent.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    data = features(args.cache)
    rows = []
    print(
        "| lr | clip | bias | optimizer | rounds x steps | validation accuracy per round (mean of 3 seeds) ",
        end="",
    )
    print("| last sd |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for regime in REGIMES:
        runs = np.array([federate(data, regime, seed) for seed in SEEDS])
        mean, spread = runs.mean(0), float(runs[:, -1].std())
        rows.append({"regime": asdict(regime), "mean_per_round": mean.tolist(), "last_sd": spread})
        print(
            f"| {regime.lr:g} | {regime.clip:g} | {regime.bias} | {'adam' if regime.adam else 'sgd'} | "
            f"{regime.rounds} x {regime.steps} | {', '.join(f'{a:.3f}' for a in mean)} | {spread:.3f} |"
        )
    if args.out is not None:
        args.out.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
