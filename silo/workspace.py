"""The silo's local side of a run: its private data, its model, its DP trainer and its on-disk accountant."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from aslora_core.adapters import read_adapter
from aslora_core.config import PrivacySettings, TaskName, TrainingSettings
from aslora_core.data import EncodedDataset
from aslora_core.data.records import Records
from aslora_core.factors import AdapterState, FactorChoice
from aslora_core.privacy import PrivacyAccountant
from aslora_core.privacy.planning import expected_sample_rate
from aslora_core.tasks import make_task
from aslora_core.training import LocalResult, LocalTrainer, StepCallback
from aslora_core.training.schedule import round_lr_scale
from aslora_rpc.messages import RunPlan
from aslora_silo.config import LocalCompute, LocalData

LOGGER = logging.getLogger(__name__)
LEDGER_FILE = "privacy-ledger.json"
DISCLOSURE_SUBSET_SEED = 0
"""The subset kept for a coarse dataset size depends only on the file: the same at every (re)start."""


class SiloError(RuntimeError):
    """The silo cannot take part (wrong model, ledger of another accountant, unreadable data)."""


def load_records(task: TaskName, data: LocalData, label_names: tuple[str, ...] | None) -> Records:
    """The records the silo trains on for `task` (labels numbered by `label_names` when given): all of its
    data, or the same seeded subset every time, of a size that is a multiple of `data.size_granularity`."""
    records = make_task(task).load_records(data.train_path, data.fields, label_names or None)
    kept = len(records) // data.size_granularity * data.size_granularity
    if kept == 0:
        raise SiloError(
            f"{len(records)} record(s) is fewer than the dataset_size_granularity {data.size_granularity}"
        )
    if kept == len(records):
        return records
    chosen = np.random.default_rng(DISCLOSURE_SUBSET_SEED).choice(len(records), size=kept, replace=False)
    return records.subset(np.sort(chosen))


class Workspace:
    """Model, data and accountant of one silo in one run; the accountant is saved before every round."""

    def __init__(
        self,
        *,
        silo_id: str,
        model_path: Path,
        data: LocalData,
        compute: LocalCompute,
        plan: RunPlan,
        state_dir: Path,
    ) -> None:
        """Encode the data with the run's labels, build the model as the coordinator does, read the ledger."""
        self.silo_id = silo_id
        self.plan = plan
        self.compute = compute
        self.task = make_task(plan.task)
        records = load_records(plan.task, data, plan.label_names)
        self.data: EncodedDataset = self.task.encode(records, model_path, compute.max_length)
        self.model = self.task.build_model(model_path, plan.label_names, plan.lora, plan.seed)
        self.template = read_adapter(self.model)
        """This silo's own adapter before any round: what a downloaded global adapter must look like."""
        self.layer_names = self.template.layer_names
        self.sample_rate = expected_sample_rate(plan.training.batch_size, len(self.data))
        self.ledger_path = state_dir / LEDGER_FILE
        self.accountant = self._load_accountant()

    def _load_accountant(self) -> PrivacyAccountant:
        if not self.ledger_path.exists():
            return PrivacyAccountant(self.plan.privacy.accountant)
        accountant = PrivacyAccountant.load(self.ledger_path)
        if accountant.kind is not self.plan.privacy.accountant:
            raise SiloError(
                f"{self.ledger_path} was kept with the {accountant.kind.value} accountant, "
                f"the run uses {self.plan.privacy.accountant.value}"
            )
        LOGGER.info(
            "silo %s: privacy ledger loaded, epsilon so far %.4f",
            self.silo_id,
            accountant.epsilon(self.plan.privacy.delta),
        )
        return accountant

    def epsilon(self) -> float:
        """Epsilon spent so far at the run's delta, by this silo's own accountant."""
        return self.accountant.epsilon(self.plan.privacy.delta)

    def train(
        self,
        round_index: int,
        global_state: AdapterState,
        selection: dict[str, FactorChoice],
        sigma: float,
        on_step: StepCallback | None = None,
        *,
        charged_from: PrivacyAccountant | None = None,
    ) -> LocalResult:
        """One round of DP-SGD; the ledger on disk is charged for the whole round before training starts.

        `charged_from`: the ledger as it was before this task was first charged (the silo was killed while
        training it): the task is charged on top of that, so once in all.
        """
        if charged_from is not None:
            self.accountant = charged_from
        planned = PrivacyAccountant(self.accountant.kind, self.accountant.history)
        planned.record(sigma, self.sample_rate, self.plan.training.local_steps)
        planned.save(self.ledger_path)
        scale = round_lr_scale(self.plan.training.lr_schedule, round_index, self.plan.rounds)
        result = self._trainer(sigma).train_round(
            round_index, global_state, selection, sigma, on_step, lr_scale=scale
        )
        self.accountant.save(self.ledger_path)
        return result

    def _trainer(self, sigma: float) -> LocalTrainer:
        training, privacy = self.plan.training, self.plan.privacy
        return LocalTrainer(
            silo_id=self.silo_id,
            task=self.task,
            model=self.model,
            data=self.data,
            training=TrainingSettings(
                local_steps=training.local_steps,
                batch_size=training.batch_size,
                physical_batch_size=self.compute.physical_batch_size,
                lr=training.lr,
                head_lr=training.head_lr,
                optimizer=training.optimizer,
                lr_schedule=training.lr_schedule,
                max_length=self.compute.max_length,
                device=self.compute.device,
            ),
            privacy=PrivacySettings(
                clip_norm=privacy.clip_norm,
                head_clip_norm=privacy.head_clip_norm,
                delta=privacy.delta,
                noise_multiplier=sigma,
                accountant=privacy.accountant,
                secure_noise=privacy.secure_noise,
                clipping=privacy.clipping,
            ),
            accountant=self.accountant,
            seed=self.plan.seed,
        )
