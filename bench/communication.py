"""Bytes a silo uploads per round under each policy, and the share of AS-LoRA's score statistics.

The payloads are the real wire format (`aslora_core.serialization.update_to_bytes`, safetensors with the
statistics as float64 scalars) of updates shaped like MiniLM (the demo's model, read from its files), a
RoBERTa-base and a 7B decoder adapter. Policies that train one factor per layer (aslora, ffa, rolora,
random, fixed-split) send the same bytes; fedit and svd send both factors. Statistics are released for
the trained factors (`trained` clipping, the `norm` estimator) or for both (`joint`: `gradient`, `hybrid`).

    python -m bench.communication --out bench/results/communication.json
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from aslora_core.adapters import attach_lora, default_model_path, load_base_classifier, read_adapter
from aslora_core.config import LoraSettings
from aslora_core.factor_choice import Factor, FactorChoice
from aslora_core.factors import (
    AdapterState,
    CurvatureStatistics,
    FactorStatistics,
    LayerFactors,
    SiloStatistics,
    SiloUpdate,
)
from aslora_core.serialization import statistics_bytes, update_to_bytes

MINILM_LABELS = 5
"""BBC News, the demo's data set, has five classes."""
MIB = 1 << 20


@dataclass(frozen=True)
class SyntheticShape:
    """An adapter of `matrices` square width x width matrices at `rank`, without a head."""

    name: str
    matrices: int
    width: int
    rank: int

    def state(self) -> AdapterState:
        """Zero factors of this shape."""
        layers = {
            f"layer.{i}": LayerFactors(
                a=torch.zeros(self.rank, self.width), b=torch.zeros(self.width, self.rank)
            )
            for i in range(self.matrices)
        }
        return AdapterState(layers=layers, head={}, scaling=2.0)


SYNTHETIC = (
    SyntheticShape("roberta-base (24 x 768, r=8)", 24, 768, 8),
    SyntheticShape("7B decoder (128 x 4096, r=16)", 128, 4096, 16),
)


def minilm_state() -> AdapterState:
    """The demo's adapter: all-MiniLM-L6-v2 with LoRA r=8 on query and value, and a 5-class head."""
    model = attach_lora(load_base_classifier(default_model_path(), MINILM_LABELS), LoraSettings(), seed=0)
    return read_adapter(model)


def update_bytes(state: AdapterState, choice: FactorChoice, joint_statistics: bool) -> tuple[int, int]:
    """(payload bytes, statistics bytes) of one silo's update training `choice` in every layer."""
    # a layer training one factor also releases that factor's three secant sums
    secants = (
        CurvatureStatistics(secant=1.0, step_sq=1.0, step_change=1.0) if len(choice.factors) == 1 else None
    )
    statistics = {
        name: {
            factor: FactorStatistics(
                grad_sq=1.0, proj_sq=1.0, curvature=secants if factor in choice.factors else None
            )
            for factor in (Factor if joint_statistics else choice.factors)
        }
        for name in state.layer_names
    }
    update = SiloUpdate(
        silo_id="silo-00",
        weight=1.0,
        factors={
            name: {factor: state.layers[name].factor(factor) for factor in choice.factors}
            for name in state.layer_names
        },
        head=dict(state.head),
        statistics=SiloStatistics(layers=statistics, steps=1, noise_variance=1.0),
    )
    return len(update_to_bytes(update)), statistics_bytes(update)


@dataclass(frozen=True)
class CommunicationRow:
    """One adapter's upload per silo and round: one factor or both, and the statistics' share."""

    adapter: str
    one_factor_bytes: int
    one_factor_statistics_share: float
    one_factor_joint_statistics_share: float
    both_factors_bytes: int
    both_factors_statistics_share: float


def measure(name: str, state: AdapterState) -> CommunicationRow:
    """Bytes for one factor and for both, and the statistics' share of each."""
    one, one_stats = update_bytes(state, FactorChoice.B, joint_statistics=False)
    one_joint, joint_stats = update_bytes(state, FactorChoice.B, joint_statistics=True)
    both, both_stats = update_bytes(state, FactorChoice.BOTH, joint_statistics=False)
    return CommunicationRow(
        adapter=name,
        one_factor_bytes=one,
        one_factor_statistics_share=one_stats / one,
        one_factor_joint_statistics_share=joint_stats / one_joint,
        both_factors_bytes=both,
        both_factors_statistics_share=both_stats / both,
    )


def main() -> None:
    """Measure the three adapters; print a table, write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path)
    arguments = parser.parse_args()
    rows = [measure("MiniLM-L6 (12 x q,v 384, r=8, 5-class head)", minilm_state())]
    rows += [measure(shape.name, shape.state()) for shape in SYNTHETIC]
    print(f"{'adapter':<46} {'one factor MiB':>15} {'stats %':>8} {'joint stats %':>14} {'both MiB':>9}")
    for row in rows:
        print(
            f"{row.adapter:<46} {row.one_factor_bytes / MIB:>15.3f} "
            f"{100 * row.one_factor_statistics_share:>8.3f} "
            f"{100 * row.one_factor_joint_statistics_share:>14.3f} "
            f"{row.both_factors_bytes / MIB:>9.3f}"
        )
    if arguments.out is not None:
        arguments.out.parent.mkdir(parents=True, exist_ok=True)
        arguments.out.write_text(json.dumps({"rows": [asdict(r) for r in rows]}, indent=2) + "\n")


if __name__ == "__main__":
    main()
