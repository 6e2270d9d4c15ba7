"""Server time of one aggregation: AS-LoRA's exact one-factor mean versus FedIT and the SVD re-factoring.

All rules run through `aslora_core.aggregation.aggregate`, as the coordinator runs them, on synthetic
adapters of three model shapes, with K silos. FedIT is timed as shipped (its two means and the
product-error diagnostic) and as its two means alone (two exact means, one per factor). A full SVD of
the m x n mean product (what an SVD baseline without the QR core would do) is timed beside them on a few
layers and scaled to the whole adapter.
Every figure is the median of `--repeats` runs in this process; read the ratios, not the seconds.

    python -m bench.aggregation_cost --silos 10 50 --out bench/results/aggregation_cost.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from aslora_core.aggregation import aggregate
from aslora_core.aggregation_rule import AggregationRule
from aslora_core.factor_choice import Factor, FactorChoice, Selection
from aslora_core.factors import AdapterState, LayerFactors, SiloUpdate

DEFAULT_SILOS = (10, 50)
DEFAULT_REPEATS = 3
FULL_SVD_LAYERS = 2
"""Full SVDs of m x n products are slow: time this many layers and scale to the adapter's layer count."""
SCALING = 2.0
SEED = 0


@dataclass(frozen=True)
class AdapterShape:
    """An adapter to aggregate: how many adapted matrices, each m x n, at rank r."""

    name: str
    matrices: int
    width: int
    rank: int


SHAPES = (
    AdapterShape("roberta-base (12 layers x q,v; 768, r=8)", 24, 768, 8),
    AdapterShape("roberta-large (24 layers x q,v; 1024, r=8)", 48, 1024, 8),
    AdapterShape("7B decoder (32 layers x q,k,v,o; 4096, r=16)", 128, 4096, 16),
)


def _state(shape: AdapterShape, generator: torch.Generator) -> AdapterState:
    layers = {
        f"layer.{i}": LayerFactors(
            a=torch.randn(shape.rank, shape.width, generator=generator),
            b=torch.randn(shape.width, shape.rank, generator=generator),
        )
        for i in range(shape.matrices)
    }
    return AdapterState(layers=layers, head={}, scaling=SCALING)


def _updates(
    state: AdapterState, selection: Selection, silos: int, generator: torch.Generator
) -> list[SiloUpdate]:
    return [
        SiloUpdate(
            silo_id=f"silo-{i:03d}",
            weight=float(i + 1),
            factors={
                name: {
                    f: torch.randn(state.layers[name].factor(f).shape, generator=generator)
                    for f in choice.factors
                }
                for name, choice in selection.items()
            },
            head={},
        )
        for i in range(silos)
    ]


def _only(update: SiloUpdate, factor: Factor) -> SiloUpdate:
    """The same update carrying only `factor` of every layer."""
    return replace(update, factors={n: {factor: f[factor]} for n, f in update.factors.items()})


def _median_seconds(run: Callable[[], object], repeats: int, *, warm_up: bool = True) -> float:
    """Median wall time of `repeats` calls, after one untimed call (allocator and kernel warm-up)."""
    if warm_up:
        run()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _full_svd_seconds(state: AdapterState, updates: list[SiloUpdate]) -> float:
    """Form sum_i p_i B_i A_i (m x n) and take its full SVD for FULL_SVD_LAYERS layers, scaled up."""
    names = state.layer_names[:FULL_SVD_LAYERS]
    total = sum(u.weight for u in updates)

    def run() -> None:
        for name in names:
            product = sum(
                (u.weight / total) * (u.factors[name][Factor.B] @ u.factors[name][Factor.A]) for u in updates
            )
            assert isinstance(product, torch.Tensor)
            torch.linalg.svd(product, full_matrices=False)

    # One timed call: each takes seconds, so warm-up and repeats would change nothing but the wait.
    return _median_seconds(run, 1, warm_up=False) * len(state.layers) / len(names)


def measure(shape: AdapterShape, silos: int, repeats: int) -> dict[str, float | int | str]:
    """Median seconds of each rule on one shape with `silos` updates, and the ratios to AS-LoRA's."""
    generator = torch.Generator().manual_seed(SEED)
    state = _state(shape, generator)
    one_factor = {
        name: FactorChoice.A if i % 2 else FactorChoice.B for i, name in enumerate(state.layer_names)
    }
    all_a = dict.fromkeys(state.layer_names, FactorChoice.A)
    all_b = dict.fromkeys(state.layer_names, FactorChoice.B)
    both = dict.fromkeys(state.layer_names, FactorChoice.BOTH)
    exact_updates = _updates(state, one_factor, silos, generator)
    exact = _median_seconds(
        lambda: aggregate(state, exact_updates, one_factor, AggregationRule.EXACT), repeats
    )
    both_updates = _updates(state, both, silos, generator)
    a_updates = [
        replace(u, factors={n: {Factor.A: f[Factor.A]} for n, f in u.factors.items()}) for u in both_updates
    ]
    b_updates = [
        replace(u, factors={n: {Factor.B: f[Factor.B]} for n, f in u.factors.items()}) for u in both_updates
    ]

    def two_means() -> None:
        aggregate(state, a_updates, all_a, AggregationRule.EXACT)
        aggregate(state, b_updates, all_b, AggregationRule.EXACT)

    means = _median_seconds(two_means, repeats)
    fedit = _median_seconds(
        lambda: aggregate(state, both_updates, both, AggregationRule.SEPARATE_MEANS), repeats
    )
    svd = _median_seconds(lambda: aggregate(state, both_updates, both, AggregationRule.SVD), repeats)
    full_svd = _full_svd_seconds(state, both_updates)
    return {
        "shape": shape.name,
        "silos": silos,
        "aslora_seconds": exact,
        "fedit_means_seconds": means,
        "fedit_seconds": fedit,
        "svd_qr_seconds": svd,
        "full_svd_seconds": full_svd,
        "fedit_means_ratio": means / exact,
        "fedit_ratio": fedit / exact,
        "svd_qr_ratio": svd / exact,
        "full_svd_ratio": full_svd / exact,
    }


def main() -> None:
    """Measure every shape with every silo count; print a table, write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--silos", type=int, nargs="+", default=list(DEFAULT_SILOS))
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS)
    parser.add_argument("--shapes", type=int, nargs="+", default=list(range(len(SHAPES))))
    parser.add_argument("--out", type=Path)
    arguments = parser.parse_args()
    rows = []
    header = (
        f"{'adapter':<46} {'K':>3} {'aslora s':>9} {'2 means x':>10} {'fedit x':>8} {'svd(QR) x':>10} "
        f"{'full SVD x':>11}"
    )
    print(header)
    for index in arguments.shapes:
        for silos in arguments.silos:
            row = measure(SHAPES[index], silos, arguments.repeats)
            rows.append(row)
            if arguments.out is not None:
                _write(arguments.out, arguments.repeats, rows)
            print(
                f"{row['shape']:<46} {silos:>3} {row['aslora_seconds']:>9.4f} "
                f"{row['fedit_means_ratio']:>10.1f} {row['fedit_ratio']:>8.1f} "
                f"{row['svd_qr_ratio']:>10.1f} {row['full_svd_ratio']:>11.1f}",
                flush=True,
            )


def _write(path: Path, repeats: int, rows: list[dict[str, float | int | str]]) -> None:
    """The rows so far as JSON (rewritten after each row, so an interrupted run keeps what it measured)."""
    document = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
        },
        "repeats": repeats,
        "full_svd_layers_timed": FULL_SVD_LAYERS,
        "rows": rows,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()
