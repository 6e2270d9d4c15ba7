"""The silo's local side of a run: its private data, its model, its DP trainer and its on-disk accountant."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import numpy as np

from aslora_core.adapters import read_adapter
from aslora_core.config import ComputeSettings, ConfigError, TaskName
from aslora_core.data import EncodedDataset
from aslora_core.data.records import Records
from aslora_core.factor_choice import FactorChoice
from aslora_core.factors import AdapterState
from aslora_core.privacy import ChargeRecorder
from aslora_core.privacy.planning import expected_sample_rate
from aslora_core.round_numbers import round_number
from aslora_core.tasks import make_task
from aslora_core.training import LocalResult, LocalTrainer, StepCallback
from aslora_core.training.factor_steps import FactorSteps
from aslora_core.training.ranks import RankCollective
from aslora_core.training.schedule import round_lr_scale
from aslora_rpc.messages import RunPlan
from aslora_silo.config import LocalData, SiloPrivacy
from aslora_silo.evaluation_split import split, split_key

LOGGER = logging.getLogger(__name__)
DISCLOSURE_SUBSET_SEED = 0
"""The subset kept for a coarse dataset size depends only on the file: the same at every (re)start."""


def load_records(
    task: TaskName, data: LocalData, label_names: tuple[str, ...] | None, state_dir: Path
) -> Records:
    """The records the silo trains on for `task` (labels numbered by `label_names` when given): all of its
    training file but the records held out for evaluation (by the split key in `state_dir`), or the same
    seeded subset of those every time, of a size that is a multiple of `data.size_granularity`."""
    records = make_task(task).load_records(data.train_path, data.fields, label_names or None)
    if data.eval_fraction > 0:
        records, _ = split(records, split_key(state_dir), data.eval_fraction)
    kept = len(records) // data.size_granularity * data.size_granularity
    if kept == 0:
        raise ConfigError(
            f"[privacy] dataset_size_granularity = {data.size_granularity}: more than the "
            f"{len(records)} record(s) of {data.train_path}"
        )
    if kept == len(records):
        return records
    chosen = np.random.default_rng(DISCLOSURE_SUBSET_SEED).choice(len(records), size=kept, replace=False)
    return records.subset(np.sort(chosen))


def load_evaluation_records(
    task: TaskName, data: LocalData, label_names: tuple[str, ...] | None, state_dir: Path
) -> Records | None:
    """The silo's evaluation records (its eval_path, or the held-out share of its training file); None
    when it has none."""
    if data.eval_path is not None:
        return make_task(task).load_records(data.eval_path, data.fields, label_names or None)
    if data.eval_fraction == 0:
        return None
    records = make_task(task).load_records(data.train_path, data.fields, label_names or None)
    _, held = split(records, split_key(state_dir), data.eval_fraction)
    return held if len(held) else None


class RoundLedger(ChargeRecorder, Protocol):
    """Where a workspace's trainer charges a round: the silo's ledger at the lead rank (a `SiloLedger`), a
    throwaway record at the other ranks."""

    delta: float
    """The delta of the epsilon figures the trainer reports."""


@dataclass(frozen=True)
class RoundOrder:
    """One round of local training, as every training rank of the silo is told it."""

    round_index: int
    global_state: AdapterState
    selection: dict[str, FactorChoice]
    sigma: float


LeadTraining = Callable[[RankCollective], LocalResult]
"""The lead rank's own share of a round, given the collective of the silo's ranks."""


class RoundRanks(Protocol):
    """The silo's other training ranks (silo/training_ranks.py), when it trains on several devices."""

    def train(self, order: RoundOrder, lead: LeadTraining) -> LocalResult:
        """Have every other rank train its share of `order` while this process runs `lead`."""
        ...

    def stop(self) -> None:
        """End the other ranks' processes."""
        ...


class Workspace:
    """Model, data and trainer of one silo in one run; its privacy ledger is the silo's own."""

    def __init__(
        self,
        *,
        silo_id: str,
        model_path: Path,
        data: LocalData,
        compute: ComputeSettings,
        privacy: SiloPrivacy,
        plan: RunPlan,
        ledger: RoundLedger,
        state_dir: Path,
        ranks: RoundRanks | None = None,
    ) -> None:
        """Encode the data with the run's labels and build the model as the coordinator does; `ranks`:
        the other training ranks, when this silo trains on several devices (this process leads them)."""
        self.silo_id = silo_id
        self.model_path = model_path
        self.plan = plan
        self.compute = compute
        self.ledger = ledger
        self.ranks = ranks
        self.seeded = privacy.test_mode and plan.privacy.test_mode
        """Seeded noise and sampling: only when the silo's config declares a test mode and the plan asks."""
        self.task = make_task(plan.task)
        records = load_records(plan.task, data, plan.label_names, state_dir)
        self.data: EncodedDataset = self.task.encode(records, model_path, compute.max_length)
        self.model = self.task.build_model(
            model_path, plan.label_names, plan.lora, plan.federation.seed, precision=compute.precision
        )
        self.template = read_adapter(self.model)
        """This silo's own adapter before any round: what a downloaded global adapter must look like."""
        self.layer_names = self.template.layer_names
        self.sample_rate = expected_sample_rate(plan.training.batch_size, len(self.data))

    def train(
        self,
        round_index: int,
        global_state: AdapterState,
        selection: dict[str, FactorChoice],
        sigma: float,
        on_step: StepCallback | None = None,
    ) -> LocalResult:
        """One round of DP-SGD, alone or across the silo's training ranks; the trainer charges the ledger
        (on disk) for the whole round before it reads a record."""
        if self.seeded:
            LOGGER.warning(
                "silo %s: TEST MODE, round %d: seeded noise and sampling, no privacy guarantee",
                self.silo_id,
                round_number(round_index),
            )
        order = RoundOrder(round_index, global_state, selection, sigma)
        if self.ranks is None:
            return self.train_share(order, on_step, None)
        return self.ranks.train(order, lambda collective: self.train_share(order, on_step, collective))

    def train_share(
        self, order: RoundOrder, on_step: StepCallback | None, collective: RankCollective | None
    ) -> LocalResult:
        """This process's part of the round: all of it alone, its share as one of `collective`'s ranks."""
        scale = round_lr_scale(self.plan.training.lr_schedule, order.round_index, self.plan.federation.rounds)
        steps = FactorSteps.of(self.plan.federation.traits, self.plan.training)
        return self._trainer(order.sigma, collective).train_round(
            order.round_index,
            order.global_state,
            order.selection,
            order.sigma,
            on_step,
            lr_scale=scale,
            factor_steps=steps,
        )

    def close(self) -> None:
        """End the other training ranks, if any (a later round would start them again)."""
        if self.ranks is not None:
            self.ranks.stop()

    def _trainer(self, sigma: float, collective: RankCollective | None) -> LocalTrainer:
        return LocalTrainer(
            silo_id=self.silo_id,
            task=self.task,
            model=self.model,
            data=self.data,
            training=self.plan.training,
            compute=self.compute,
            # The noise source and the delta of the figures it reports are this silo's, not the plan's.
            privacy=replace(
                self.plan.privacy,
                noise_multiplier=sigma,
                target_epsilon=None,
                delta=self.ledger.delta,
                test_mode=self.seeded,
            ),
            accountant=self.ledger,
            seed=self.plan.federation.seed,
            ranks=collective,
        )
