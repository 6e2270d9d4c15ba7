"""The silo's local side of a run: its private data, its model, its DP trainer and its on-disk accountant."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np

from aslora_core.adapters import read_adapter
from aslora_core.config import ComputeSettings, ConfigError, TaskName
from aslora_core.data import EncodedDataset
from aslora_core.data.records import Records
from aslora_core.factor_choice import FactorChoice
from aslora_core.factors import AdapterState
from aslora_core.privacy.planning import expected_sample_rate
from aslora_core.round_numbers import round_number
from aslora_core.tasks import make_task
from aslora_core.training import LocalResult, LocalTrainer, StepCallback
from aslora_core.training.factor_steps import FactorSteps
from aslora_core.training.schedule import round_lr_scale
from aslora_rpc.messages import RunPlan
from aslora_silo.config import LocalData, SiloPrivacy
from aslora_silo.evaluation_split import split, split_key
from aslora_silo.ledger import SiloLedger

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
        ledger: SiloLedger,
        state_dir: Path,
    ) -> None:
        """Encode the data with the run's labels and build the model as the coordinator does."""
        self.silo_id = silo_id
        self.model_path = model_path
        self.plan = plan
        self.compute = compute
        self.ledger = ledger
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
        """One round of DP-SGD; the trainer charges the ledger (on disk) for the whole round before it
        reads a record."""
        if self.seeded:
            LOGGER.warning(
                "silo %s: TEST MODE, round %d: seeded noise and sampling, no privacy guarantee",
                self.silo_id,
                round_number(round_index),
            )
        scale = round_lr_scale(self.plan.training.lr_schedule, round_index, self.plan.federation.rounds)
        steps = FactorSteps.of(self.plan.federation.traits, self.plan.training)
        return self._trainer(sigma).train_round(
            round_index, global_state, selection, sigma, on_step, lr_scale=scale, factor_steps=steps
        )

    def _trainer(self, sigma: float) -> LocalTrainer:
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
        )
