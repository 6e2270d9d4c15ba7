"""A deterministic federation over gRPC with one silo on two gloo ranks and one on a single process is
repeatable bit for bit (adapter, losses, selections, epsilons), and it spends the epsilons of the same
federation in one process, its adapter within float32 rounding of that one (the two ranks add their
clipped sums in another order)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from aslora_core.config import DataSettings, SimulationSettings
from aslora_core.evaluation import Evaluation, evaluate
from aslora_core.factors import AdapterState
from aslora_core.simulation import run_simulation
from tests.federation.settings import tiny_simulation
from tests.grpc.helpers import write_tsv
from tests.reliability.harness import Federation

ROUNDS = 2
SILOS = 2
MULTI_DEVICE = 0
"""Silo 0 trains on two ranks, silo 1 alone."""
RUN_TIMEOUT_SECONDS = 150.0
ROUNDING = 1e-5
"""Largest difference allowed from the one-process federation: float32 sums in another order, carried
through two rounds of training and aggregation."""


def _settings(model_dir: Path, folder: Path) -> SimulationSettings:
    data = DataSettings(
        train_path=str(write_tsv(folder / "train.tsv", 96)),
        eval_path=str(write_tsv(folder / "eval.tsv", 24, 5000)),
    )
    return tiny_simulation(
        model_dir, data, silos=SILOS, rounds=ROUNDS, local_steps=2, batch_size=16, physical_batch_size=4
    )


def _federation(settings: SimulationSettings, work: Path) -> tuple[AdapterState, dict[str, Any]]:
    """Run the federation over gRPC with silo MULTI_DEVICE on two ranks: its final adapter and results."""
    work.mkdir()
    federation = Federation.of_simulation(work, settings)
    federation.silo_tables[MULTI_DEVICE]["training"]["devices"] = 2
    try:
        federation.start_coordinator()
        for index in range(SILOS):
            federation.start_silo(index)
        federation.wait_silos_exit(RUN_TIMEOUT_SECONDS)
        assert federation.wait_coordinator_exit(RUN_TIMEOUT_SECONDS) == 0
        state = federation.checkpoint().global_state
    finally:
        federation.close()
    assert "2 training ranks on cpu (gloo)" in (work / f"silo-{MULTI_DEVICE}.log").read_text()
    return state, federation.results()


def _tensors(state: AdapterState) -> dict[str, torch.Tensor]:
    flat = {f"{name}.a": pair.a for name, pair in state.layers.items()}
    flat.update({f"{name}.b": pair.b for name, pair in state.layers.items()})
    flat.update({f"head.{name}": tensor for name, tensor in state.head.items()})
    return flat


def _figures(results: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [(r["loss"], r["accuracy"], r["selection"], r["silos"]) for r in results["rounds"]]


def test_a_federation_with_a_two_rank_silo_repeats_bit_for_bit(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, single_thread: None
) -> None:
    settings = _settings(tiny_model_dir, tmp_path)
    first_state, first = _federation(settings, tmp_path / "first")
    second_state, second = _federation(settings, tmp_path / "second")

    ours, again = _tensors(first_state), _tensors(second_state)
    assert ours.keys() == again.keys()
    for name, tensor in ours.items():
        assert torch.equal(again[name], tensor), f"{name} differs between the two runs"
    assert _figures(second) == _figures(first)
    assert second["silo_epsilons"] == first["silo_epsilons"]

    evaluated: list[AdapterState] = []

    def recording_evaluate(*arguments: Any, **keywords: Any) -> Evaluation:
        evaluated.append(arguments[1])
        return evaluate(*arguments, **keywords)

    monkeypatch.setattr("aslora_core.simulation.evaluate", recording_evaluate)
    alone = run_simulation(settings)
    assert first["silo_epsilons"] == alone.silo_epsilons
    assert [r["selection"] for r in first["rounds"]] == [r.selection for r in alone.rounds]
    for name, tensor in _tensors(evaluated[-1]).items():
        assert torch.allclose(ours[name], tensor, rtol=0.0, atol=ROUNDING), name
