"""In-process federation: K silos and the round engine in one process, no network."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from peft import PeftModel

from aslora_core.adapters import default_model_path, read_adapter
from aslora_core.config import DataSettings, PartitionSettings, SimulationSettings
from aslora_core.data import (
    EncodedDataset,
    load_bbc_news,
    partition_dirichlet,
    partition_iid,
    split_validation,
)
from aslora_core.data.records import Records
from aslora_core.evaluation import evaluate
from aslora_core.privacy import PrivacyAccountant
from aslora_core.privacy.planning import plan_noise_multipliers
from aslora_core.results import RoundRecord, RunResult
from aslora_core.round_records import round_record
from aslora_core.rounds import RoundEngine, RoundOutcome
from aslora_core.selection import make_policy
from aslora_core.serialization import statistics_bytes, update_from_bytes, update_to_bytes
from aslora_core.tasks import Task, make_task
from aslora_core.training import LocalTrainer
from aslora_core.training.factor_steps import FactorSteps
from aslora_core.training.schedule import round_lr_scale
from aslora_core.training.statistics import published_noise

RoundCallback = Callable[[RoundRecord], None]
SiloCallback = Callable[[int, str], None]


@dataclass(frozen=True)
class Federation:
    """The pieces of a simulated federation, built once from the settings."""

    task: Task
    model: PeftModel
    trainers: dict[str, LocalTrainer]
    noise_multipliers: dict[str, float]
    eval_data: EncodedDataset
    engine: RoundEngine


def load_records(task: Task, data: DataSettings, seed: int) -> tuple[Records, Records]:
    """Training and evaluation records as configured (evaluation split off the training file if absent;
    without a training file, BBC News: the settings allow that for sequence classification only)."""
    fields = data.fields
    train: Records = (
        load_bbc_news() if data.train_path is None else task.load_records(Path(data.train_path), fields, None)
    )
    if data.eval_path is None:
        train, evaluation = split_validation(train, data.eval_fraction, seed)
    else:
        evaluation = task.load_records(Path(data.eval_path), fields, train.label_names or None)
    rng = np.random.default_rng(seed)
    if data.max_train_examples is not None and data.max_train_examples < len(train):
        train = train.subset(np.sort(rng.choice(len(train), data.max_train_examples, replace=False)))
    if data.max_eval_examples is not None and data.max_eval_examples < len(evaluation):
        evaluation = evaluation.subset(
            np.sort(rng.choice(len(evaluation), data.max_eval_examples, replace=False))
        )
    return train, evaluation


def partition_records(labels: np.ndarray, partition: PartitionSettings, seed: int) -> list[np.ndarray]:
    """Index arrays, one per silo, by the configured partitioner."""
    if partition.dirichlet_alpha is None:
        return partition_iid(len(labels), partition.silos, seed)
    return partition_dirichlet(labels, partition.silos, partition.dirichlet_alpha, seed)


def silo_ids(count: int) -> list[str]:
    """Stable silo identifiers, ordered as aggregation orders them."""
    return [f"silo-{index:02d}" for index in range(count)]


def build_federation(settings: SimulationSettings) -> Federation:
    """Load data and model, partition the records, and make one DP trainer per silo."""
    seed = settings.federation.seed
    task = make_task(settings.task)
    model_path = Path(settings.model_path) if settings.model_path else default_model_path()
    train, evaluation = load_records(task, settings.data, seed)
    encoded = task.encode(train, model_path, settings.compute.max_length)
    eval_data = task.encode(evaluation, model_path, settings.compute.max_length)
    model = task.build_model(
        model_path, train.label_names, settings.lora, seed, precision=settings.compute.precision
    )
    parts = partition_records(train.labels, settings.partition, seed)
    trainers: dict[str, LocalTrainer] = {}
    for silo_id, indices in zip(silo_ids(settings.partition.silos), parts, strict=True):
        index = torch.as_tensor(indices, dtype=torch.long)
        trainers[silo_id] = LocalTrainer(
            silo_id=silo_id,
            task=task,
            model=model,
            data=EncodedDataset({k: v[index] for k, v in encoded.tensors.items()}),
            training=settings.training,
            compute=settings.compute,
            privacy=settings.privacy,
            accountant=PrivacyAccountant(settings.privacy.accountant),
            seed=seed,
        )
    initial = read_adapter(model)
    policy = make_policy(
        settings.federation.policy, initial.layer_names, settings.federation.score, seed, initial.scaling
    )
    return Federation(
        task=task,
        model=model,
        trainers=trainers,
        noise_multipliers=plan_noise_multipliers(
            settings.privacy,
            settings.federation.rounds * settings.training.local_steps,
            {s: t.sample_rate for s, t in trainers.items()},
        ),
        eval_data=eval_data,
        engine=RoundEngine.for_federation(policy, initial, settings.training, settings.federation),
    )


def run_simulation(
    settings: SimulationSettings,
    on_round: RoundCallback | None = None,
    on_silo: SiloCallback | None = None,
) -> RunResult:
    """Run R rounds of K silos in this process and evaluate the global adapter after every round that the
    federation's evaluation interval names (and the last)."""
    started = time.perf_counter()
    return run_federation(build_federation(settings), settings, started, on_round, on_silo)


def run_federation(
    federation: Federation,
    settings: SimulationSettings,
    started: float,
    on_round: RoundCallback | None = None,
    on_silo: SiloCallback | None = None,
) -> RunResult:
    """The rounds of a built federation (its engine then holds the final global adapter); `started` is
    the `time.perf_counter()` the run's wall time counts from."""
    result = RunResult(
        policy=settings.federation.policy,
        score=settings.federation.reported_score,
        settings=asdict(settings),
        silo_examples={s: t.num_examples for s, t in federation.trainers.items()},
        noise_multipliers=federation.noise_multipliers,
    )
    engine = federation.engine
    initial = evaluate(
        federation.model, engine.state, federation.eval_data, settings.compute.device, task=federation.task
    )
    result.initial_accuracy, result.initial_loss = initial.accuracy, initial.loss
    factor_steps = FactorSteps.of(settings.federation.traits, settings.training)
    for round_index in range(settings.federation.rounds):
        round_started = time.perf_counter()
        selection = engine.plan()
        updates = []
        upload_bytes = 0
        stats_bytes = 0
        for silo_id, trainer in federation.trainers.items():
            local = trainer.train_round(
                round_index,
                engine.state,
                selection,
                federation.noise_multipliers[silo_id],
                lr_scale=round_lr_scale(
                    settings.training.lr_schedule, round_index, settings.federation.rounds
                ),
                factor_steps=factor_steps,
            )
            payload = update_to_bytes(local.update)
            upload_bytes += len(payload)
            stats_bytes += statistics_bytes(local.update)
            noise = published_noise(
                federation.noise_multipliers[silo_id],
                settings.privacy,
                settings.training,
                trainer.num_examples,
                has_head=bool(engine.state.head),
            )
            updates.append(update_from_bytes(payload, noise))
            if on_silo is not None:
                on_silo(round_index, silo_id)
        outcome = engine.complete(selection, updates)
        result.silo_epsilons = {s: t.epsilon() for s, t in federation.trainers.items()}
        if not settings.federation.evaluates_after(round_index):
            continue
        record = _record(
            federation,
            outcome,
            settings,
            silo_epsilons=result.silo_epsilons,
            upload_bytes=upload_bytes,
            stats_bytes=stats_bytes,
            round_started=round_started,
        )
        result.rounds.append(record)
        if on_round is not None:
            on_round(record)
    result.wall_seconds = time.perf_counter() - started
    return result


def _record(
    federation: Federation,
    outcome: RoundOutcome,
    settings: SimulationSettings,
    *,
    silo_epsilons: dict[str, float],
    upload_bytes: int,
    stats_bytes: int,
    round_started: float,
) -> RoundRecord:
    measured = evaluate(
        federation.model, outcome.state, federation.eval_data, settings.compute.device, task=federation.task
    )
    return round_record(
        outcome,
        measured,
        silo_epsilons=silo_epsilons,
        upload_bytes=upload_bytes,
        statistics_bytes=stats_bytes,
        seconds=time.perf_counter() - round_started,
    )
