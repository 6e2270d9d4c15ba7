"""What DP costs on one model and data set: the production DP round (`LocalTrainer.train_round`) against
two bare non-private loops, one over fixed batches of exactly b records and one over Poisson batches of
the same rate and chunking, with the examples, seconds and peak memory of each.

The DP round is what a silo runs: Poisson sampling, per-sample gradients, clipping, noise (secure unless
asked otherwise), the round's statistics and the update copied out. The fixed loop is ordinary
mini-batch SGD; the Poisson loop differs from it only in its batches, so DP round / Poisson loop is the
price of the privacy machinery alone, and Poisson loop / fixed loop that of the sampling (batches vary in
size, and one larger than the physical chunk runs a second, nearly empty chunk).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from peft import PeftModel

from aslora_core.adapters import head_parameters, lora_parameters, read_adapter
from aslora_core.config import (
    ClippingEngine,
    ComputeSettings,
    Precision,
    PrivacySettings,
    TrainingSettings,
)
from aslora_core.data import EncodedDataset
from aslora_core.factor_choice import Factor, FactorChoice
from aslora_core.precision import autocast
from aslora_core.privacy import PrivacyAccountant
from aslora_core.tasks import Task
from aslora_core.training import LocalTrainer
from aslora_core.training.checkpointing import enable_gradient_checkpointing

KIB, MIB = 1024, 1 << 20
CLEAR_PEAK_RSS = "5"
"""Writing this to /proc/self/clear_refs resets the kernel's peak-RSS mark (Linux 4.0 and later)."""
LEARNING_RATE = 1e-3
"""Small, so that repeated measurements on one model stay near where they started."""
NOISE_MULTIPLIER = 1.0
SAMPLING_SEED = 0
WARM_UP_STEPS = 1


class PeakMemory:
    """Peak memory of what runs inside the block: CUDA allocations on a GPU, resident memory on the CPU."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak_mib = 0.0

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            Path("/proc/self/clear_refs").write_text(CLEAR_PEAK_RSS)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_mib = torch.cuda.max_memory_allocated(self.device) / MIB
            return
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                self.peak_mib = int(line.split()[1]) * KIB / MIB


@dataclass(frozen=True)
class Workload:
    """One model and data set, and how a round of it is computed."""

    model: PeftModel
    data: EncodedDataset
    task: Task
    batch: int
    """Logical batch b (the Poisson sides' expected batch)."""
    physical: int
    steps: int
    device: str
    precision: Precision = Precision.FLOAT32
    engine: ClippingEngine = ClippingEngine.HOOKS
    checkpointing: bool = False
    secure_noise: bool = True

    @property
    def mean_tokens(self) -> float:
        """The records' mean number of tokens (their attention mask's sum), 1 without a mask."""
        mask = self.data.tensors.get("attention_mask")
        return float(mask.sum(dim=1).double().mean()) if mask is not None else 1.0


@dataclass(frozen=True)
class Timed:
    """One measured side: examples seen, wall seconds, peak memory."""

    examples: int
    seconds: float
    peak_mib: float

    @property
    def examples_per_second(self) -> float:
        """Examples per wall second."""
        return self.examples / self.seconds


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(device: torch.device, run: Callable[[], int]) -> Timed:
    """`run` (which returns the examples it saw) timed between device synchronisations."""
    with PeakMemory(device) as memory:
        started = time.perf_counter()
        examples = run()
        _synchronize(device)
        seconds = time.perf_counter() - started
    return Timed(examples=examples, seconds=seconds, peak_mib=memory.peak_mib)


def dp_round(work: Workload, steps: int | None = None) -> Timed:
    """The production DP round of `steps` (default: the workload's) steps training every layer's B factor
    (and the head, if any), from the model's current adapter."""
    state = read_adapter(work.model)
    trainer = LocalTrainer(
        silo_id="bench",
        task=work.task,
        model=work.model,
        data=work.data,
        training=TrainingSettings(local_steps=steps or work.steps, batch_size=work.batch, lr=LEARNING_RATE),
        compute=ComputeSettings(
            device=work.device,
            physical_batch_size=work.physical,
            max_length=int(work.data.tensors["input_ids"].shape[1]),
            precision=work.precision,
            clipping_engine=work.engine,
            gradient_checkpointing=work.checkpointing,
        ),
        privacy=PrivacySettings(noise_multiplier=NOISE_MULTIPLIER, test_mode=not work.secure_noise),
        accountant=PrivacyAccountant(),
        seed=0,
    )
    selection = dict.fromkeys(state.layer_names, FactorChoice.B)
    return _timed(
        torch.device(work.device),
        lambda: trainer.train_round(0, state, selection, NOISE_MULTIPLIER).examples_seen,
    )


def _fixed_batches(work: Workload, rng: np.random.Generator) -> Iterator[np.ndarray]:
    for _ in range(work.steps):
        yield rng.choice(len(work.data), min(work.batch, len(work.data)), replace=False)


def _poisson_batches(work: Workload, rng: np.random.Generator) -> Iterator[np.ndarray]:
    rate = min(work.batch, len(work.data)) / len(work.data)
    for _ in range(work.steps):
        yield np.flatnonzero(rng.random(len(work.data)) < rate)


def _plain_loop(work: Workload, batches: Iterator[np.ndarray]) -> int:
    """Non-private SGD on the parameters the DP round trains, chunked as the trainer chunks (records of
    similar length together, at most `physical` at once); the examples seen."""
    model, device = work.model, torch.device(work.device)
    for param in model.parameters():
        param.requires_grad_(False)
    trained = [layer[Factor.B] for layer in lora_parameters(model).values()]
    trained += list(head_parameters(model).values())
    for param in trained:
        param.requires_grad_(True)
    if work.checkpointing:
        enable_gradient_checkpointing(model)
    optimizer = torch.optim.SGD(trained, lr=LEARNING_RATE)
    lengths = work.data.tensors["attention_mask"].sum(dim=1).numpy()
    model.to(device)
    model.train()
    seen = 0
    for indices in batches:
        ordered = indices[np.argsort(lengths[indices], kind="stable")]
        for start in range(0, len(ordered), work.physical):
            chunk = ordered[start : start + work.physical].tolist()
            batch = {k: v.to(device) for k, v in work.data.batch(chunk).items()}
            with autocast(work.precision, device):
                loss = work.task.loss(model, batch)
            loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        seen += len(indices)
    return seen


def plain_fixed(work: Workload) -> Timed:
    """Non-private SGD over `steps` batches of exactly b records."""
    rng = np.random.default_rng(SAMPLING_SEED)
    return _timed(torch.device(work.device), lambda: _plain_loop(work, _fixed_batches(work, rng)))


def plain_poisson(work: Workload) -> Timed:
    """Non-private SGD over `steps` Poisson batches of rate b / N, as the DP round draws them."""
    rng = np.random.default_rng(SAMPLING_SEED)
    return _timed(torch.device(work.device), lambda: _plain_loop(work, _poisson_batches(work, rng)))


def warm_up(work: Workload) -> None:
    """One short DP round and one plain step: first-call allocations, kernel choices and hook set-up."""
    dp_round(work, steps=WARM_UP_STEPS)
    _plain_loop(work, _fixed_batches(work, np.random.default_rng(SAMPLING_SEED)))


def side(timed: Timed, mean_tokens: float) -> dict[str, float]:
    """One side as report fields."""
    return {
        "examples": timed.examples,
        "seconds": timed.seconds,
        "samples_per_second": timed.examples_per_second,
        "tokens_per_second": timed.examples_per_second * mean_tokens,
        "peak_mib": timed.peak_mib,
    }


def compare(work: Workload) -> dict[str, Any]:
    """Warm up, then the DP round, the fixed loop and the Poisson loop, and the time ratios per example."""
    warm_up(work)
    private, fixed, poisson = dp_round(work), plain_fixed(work), plain_poisson(work)
    tokens = work.mean_tokens
    return {
        "precision": work.precision.value,
        "engine": work.engine.value,
        "gradient_checkpointing": work.checkpointing,
        "secure_noise": work.secure_noise,
        "logical_batch": work.batch,
        "physical_chunk": work.physical,
        "steps": work.steps,
        "mean_tokens": tokens,
        "dp_round": side(private, tokens),
        "plain_fixed": side(fixed, tokens),
        "plain_poisson": side(poisson, tokens),
        "dp_over_plain_fixed": fixed.examples_per_second / private.examples_per_second,
        "dp_over_plain_poisson": poisson.examples_per_second / private.examples_per_second,
    }
