"""The DP local trainer: one round of DP-SGD on a silo's data, training only the selected LoRA factors."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from opacus.grad_sample import AbstractGradSampleModule
from peft import PeftModel
from torch import nn

from aslora_core.adapters import head_parameters, lora_parameters, write_adapter
from aslora_core.config import (
    ClippingEngine,
    ClippingMode,
    ComputeSettings,
    OptimizerKind,
    PrivacySettings,
    TrainingSettings,
)
from aslora_core.data import EncodedDataset
from aslora_core.factor_choice import Factor, Selection
from aslora_core.factors import AdapterState, SiloStatistics, SiloUpdate
from aslora_core.precision import autocast, model_precision
from aslora_core.privacy import ChargeRecorder, derive_seed, make_noise_source
from aslora_core.tasks import Task
from aslora_core.training.checkpointing import enable_gradient_checkpointing
from aslora_core.training.dp_optimizer import ClipGroup, SourcedNoiseDPOptimizer
from aslora_core.training.factor_steps import EVERY_SELECTED, FactorSteps
from aslora_core.training.ghost_clipping import GhostClippingDPOptimizer
from aslora_core.training.grad_samples import GhostGradSampleModule, MasterGradSampleModule
from aslora_core.training.private_layers import require_private_layers
from aslora_core.training.ranks import BatchShare, RankCollective, single_share
from aslora_core.training.smoothing import GradientSmoother, gradient_smoother
from aslora_core.training.statistics import CrossStepStatistics

LOGGER = logging.getLogger(__name__)
StepCallback = Callable[[int], None]
"""Told the number of DP-SGD steps done so far in the round, after each step."""
SAMPLING_SEED_BITS = 128
FACTOR_CLIP_GROUP = 0
"""The LoRA factors are always the first clip group (the head, when clipped apart, the second)."""


@dataclass(frozen=True)
class LocalResult:
    """What one round of local training produced.

    `update` is DP-released; `mean_loss` is the loss on the silo's private batches and stays on the silo.
    """

    update: SiloUpdate
    steps: int
    epsilon: float
    noise_multiplier: float
    sample_rate: float
    mean_loss: float
    examples_seen: int


class LocalTrainer:
    """DP-SGD on one silo's records with Poisson sampling, large logical batches and masked factor steps."""

    def __init__(
        self,
        *,
        silo_id: str,
        task: Task,
        model: PeftModel,
        data: EncodedDataset,
        training: TrainingSettings,
        compute: ComputeSettings,
        privacy: PrivacySettings,
        accountant: ChargeRecorder,
        seed: int,
        ranks: RankCollective | None = None,
    ) -> None:
        """`ranks`, when this trainer is one of several ranks over the same records and model (each trains
        a share of every logical batch: aslora_core/training/ranks.py); None when it trains alone."""
        if len(data) == 0:
            raise ValueError(f"silo {silo_id} has no training records")
        if training.batch_size > len(data):
            LOGGER.info("silo %s has fewer records than the batch size: every step uses all of them", silo_id)
        self.silo_id = silo_id
        self.task = task
        self.model = model
        self.data = data
        self.training = training
        self.compute = compute
        self.privacy = privacy
        self.accountant = accountant
        self.seed = seed
        self.ranks = ranks
        self.device = torch.device(compute.device)
        built = model_precision(model)
        if built is not compute.precision:
            raise ValueError(
                f"the model was built in {built.value}, the compute settings say {compute.precision.value}"
            )
        if compute.gradient_checkpointing:
            enable_gradient_checkpointing(model)
        mask = data.tensors.get("attention_mask")
        self._lengths = mask.sum(dim=1).numpy() if mask is not None else np.zeros(len(data), dtype=np.int64)

    @property
    def expected_batch_size(self) -> int:
        """Expected logical batch b, at most the number of records N."""
        return min(self.training.batch_size, len(self.data))

    @property
    def sample_rate(self) -> float:
        """Poisson sampling rate q = b / N of this silo."""
        return self.expected_batch_size / len(self.data)

    @property
    def num_examples(self) -> int:
        """Number of training records N of this silo."""
        return len(self.data)

    def epsilon(self) -> float:
        """Epsilon spent so far at the configured delta."""
        return self.accountant.epsilon(self.privacy.delta)

    def train_round(
        self,
        round_index: int,
        global_state: AdapterState,
        selection: Selection,
        noise_multiplier: float,
        on_step: StepCallback | None = None,
        *,
        lr_scale: float = 1.0,
        factor_steps: FactorSteps = EVERY_SELECTED,
    ) -> LocalResult:
        """Start from the global adapter, run the round's DP-SGD steps (calling `on_step` with the number
        of steps done after each) at the configured learning rates times `lr_scale` (the round's place in
        the run's schedule), each updating the factors `factor_steps` names, return the trained factors."""
        steps = self.training.local_steps
        released, head = self._configure_gradients(selection)
        # Charge the whole round before touching the data: a crash mid-round never under-counts.
        self.accountant.record(noise_multiplier, self.sample_rate, steps)
        self.model.to(self.device)
        write_adapter(self.model, global_state)
        optimizer = self._make_optimizer(
            released=released,
            head=head,
            round_index=round_index,
            noise_multiplier=noise_multiplier,
            lr_scale=lr_scale,
            factor_steps=factor_steps,
        )
        statistics = self._statistics(global_state, selection, lr_scale)
        sampler = self._sampler(round_index)
        # Dropout draws from torch's global generator: fork it, seeded per silo and round, so that
        # deterministic runs repeat exactly and nothing outside this round is disturbed.
        forked = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=forked):
            torch.manual_seed(self._dropout_seed(round_index))
            total_loss, seen = self._run_steps(
                selection=selection,
                factor_steps=factor_steps,
                released=released,
                optimizer=optimizer,
                statistics=statistics,
                sampler=sampler,
                on_step=on_step,
            )
        return LocalResult(
            update=self._collect_update(selection, statistics, optimizer),
            steps=steps,
            epsilon=self.epsilon(),
            noise_multiplier=noise_multiplier,
            sample_rate=self.sample_rate,
            mean_loss=total_loss / max(seen, 1),
            examples_seen=seen,
        )

    def _dropout_seed(self, round_index: int) -> int:
        """The lead rank's (or a lone trainer's) dropout seed; every other rank draws its own masks."""
        if self.ranks is None or self.ranks.is_lead:
            return derive_seed(self.seed, self.silo_id, round_index, "dropout")
        return derive_seed(self.seed, self.silo_id, round_index, "dropout", self.ranks.rank)

    def _statistics(
        self, global_state: AdapterState, selection: Selection, lr_scale: float
    ) -> CrossStepStatistics:
        """The round's statistics; under plain SGD a layer training one factor steps by -lr times its
        released gradient, so the statistics also sum that factor's secants (its curvature)."""
        if self.training.optimizer is not OptimizerKind.SGD:
            return CrossStepStatistics(global_state=global_state)
        trained = frozenset(
            (layer, which)
            for layer, choice in selection.items()
            if len(choice.factors) == 1
            for which in choice.factors
        )
        return CrossStepStatistics(
            global_state=global_state, step_size=self.training.lr * lr_scale, trained=trained
        )

    def _run_steps(
        self,
        *,
        selection: Selection,
        factor_steps: FactorSteps,
        released: dict[tuple[str, Factor], nn.Parameter],
        optimizer: SourcedNoiseDPOptimizer,
        statistics: CrossStepStatistics,
        sampler: np.random.Generator,
        on_step: StepCallback | None,
    ) -> tuple[float, int]:
        """The round's DP-SGD steps: clip and noise every released factor (under `trained` clipping, only
        the ones this step updates), apply only the ones this step updates (smoothed, if the plan says so:
        the statistics keep the unsmoothed release)."""
        smoother = gradient_smoother(self.training)
        gsm = self._wrap()
        gsm.train()
        total_loss = 0.0
        seen = 0
        try:
            for step in range(self.training.local_steps):
                stepped = {layer: factor_steps.stepped(choice, step) for layer, choice in selection.items()}
                if self.privacy.clipping is ClippingMode.TRAINED:
                    optimizer.hold(p for (layer, which), p in released.items() if which not in stepped[layer])
                share = self._batch_share(sampler)
                total_loss += self._accumulate(gsm, optimizer, share.indices)
                seen += share.logical_size
                optimizer.pre_step()
                statistics.add_step(
                    {
                        k: p.grad
                        for k, p in released.items()
                        if p.grad is not None and not optimizer.is_held(p)
                    }
                )
                self._keep_stepped(released, stepped, smoother)
                optimizer.original_optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                if on_step is not None:
                    on_step(step + 1)
        finally:
            gsm.to_standard_module()
            for param in self.model.parameters():
                param.grad = None
        if self.ranks is not None:
            total_loss = self.ranks.sum_value(total_loss)
        return total_loss, seen

    @staticmethod
    def _keep_stepped(
        released: dict[tuple[str, Factor], nn.Parameter],
        stepped: dict[str, tuple[Factor, ...]],
        smoother: GradientSmoother | None,
    ) -> None:
        """Drop the released gradients this step does not apply; smooth the ones it does."""
        for (layer, which), param in released.items():
            if which not in stepped[layer]:
                param.grad = None
            elif smoother is not None and param.grad is not None:
                smoother.smooth_(param.grad)

    def _wrap(self) -> AbstractGradSampleModule:
        """The model with the hooks of the configured clipping engine (the trained parameters are set)."""
        if self.compute.clipping_engine is ClippingEngine.GHOST:
            return GhostGradSampleModule(
                self.model, batch_first=True, loss_reduction="sum", strict=False, use_ghost_clipping=True
            )
        return MasterGradSampleModule(self.model, batch_first=True, loss_reduction="sum", strict=False)

    def _configure_gradients(
        self, selection: Selection
    ) -> tuple[dict[tuple[str, Factor], nn.Parameter], list[nn.Parameter]]:
        """Set requires_grad for this round; return the released LoRA parameters and the trained head's."""
        for param in self.model.parameters():
            param.requires_grad_(False)
        lora = lora_parameters(self.model)
        missing = sorted(set(lora) ^ set(selection))
        if missing:
            raise ValueError(f"selection and model disagree on layers, e.g. {missing[0]}")
        released: dict[tuple[str, Factor], nn.Parameter] = {}
        for layer, params in lora.items():
            for which, param in params.items():
                if self.privacy.clipping is ClippingMode.JOINT or which in selection[layer].factors:
                    released[(layer, which)] = param
        head = list(head_parameters(self.model).values()) if self.training.effective_head_lr > 0 else []
        for param in [*released.values(), *head]:
            param.requires_grad_(True)
        require_private_layers(self.model)
        return released, head

    def _make_optimizer(
        self,
        *,
        released: dict[tuple[str, Factor], nn.Parameter],
        head: list[nn.Parameter],
        round_index: int,
        noise_multiplier: float,
        lr_scale: float,
        factor_steps: FactorSteps,
    ) -> SourcedNoiseDPOptimizer:
        factors = list(released.values())
        # One parameter group per factor learning rate, in the released order (one group unless the
        # factors alternate at different rates).
        by_rate: dict[float, list[nn.Parameter]] = {}
        for (_, which), param in released.items():
            by_rate.setdefault(factor_steps.lr_multiplier(which), []).append(param)
        groups = [
            *(
                {"params": params, "lr": self.training.lr * lr_scale * rate}
                for rate, params in by_rate.items()
            ),
            {"params": head, "lr": self.training.effective_head_lr * lr_scale},
        ]
        groups = [g for g in groups if g["params"]]
        base: torch.optim.Optimizer
        if self.training.optimizer is OptimizerKind.SGD:
            base = torch.optim.SGD(groups)
        else:
            base = torch.optim.Adam(groups)
        noise = make_noise_source(
            not self.privacy.test_mode, derive_seed(self.seed, self.silo_id, round_index, "noise")
        )
        engine = (
            GhostClippingDPOptimizer
            if self.compute.clipping_engine is ClippingEngine.GHOST
            else SourcedNoiseDPOptimizer
        )
        return engine(
            base,
            ranks=self.ranks,
            noise_source=noise,
            noise_multiplier=noise_multiplier,
            clip_groups=self._clip_groups(factors, head),
            expected_batch_size=self.expected_batch_size,
            loss_reduction="mean",
        )

    def _clip_groups(self, factors: list[nn.Parameter], head: list[nn.Parameter]) -> list[ClipGroup]:
        """One group at `clip_norm`, or the factors at `clip_norm` and the head at `head_clip_norm`."""
        if self.privacy.head_clip_norm is None or not head:
            return [ClipGroup(params=[*factors, *head], clip_norm=self.privacy.clip_norm)]
        return [
            ClipGroup(params=factors, clip_norm=self.privacy.clip_norm),
            ClipGroup(params=head, clip_norm=self.privacy.head_clip_norm),
        ]

    def _sampler(self, round_index: int) -> np.random.Generator:
        if not self.privacy.test_mode:
            return np.random.default_rng(secrets.randbits(SAMPLING_SEED_BITS))
        return np.random.default_rng(derive_seed(self.seed, self.silo_id, round_index, "sampling"))

    def _batch_share(self, sampler: np.random.Generator) -> BatchShare:
        """This trainer's records of the step's logical batch: all of them alone; across ranks, its share
        of the batch the lead rank draws."""
        if self.ranks is None:
            return single_share(self._poisson_batch(sampler))
        return self.ranks.share_batch(lambda: self._poisson_batch(sampler), self._lengths)

    def _poisson_batch(self, sampler: np.random.Generator) -> np.ndarray:
        """Each record joins the logical batch independently with probability q (Poisson sampling)."""
        return np.flatnonzero(sampler.random(len(self.data)) < self.sample_rate)

    def _chunks(self, indices: np.ndarray) -> Iterator[np.ndarray]:
        """Physical chunks of the logical batch, records of similar length together (less padding)."""
        ordered = indices[np.argsort(self._lengths[indices], kind="stable")]
        size = self.compute.physical_batch_size
        for start in range(0, len(ordered), size):
            yield ordered[start : start + size]

    def _accumulate(
        self, gsm: AbstractGradSampleModule, optimizer: SourcedNoiseDPOptimizer, indices: np.ndarray
    ) -> float:
        """Forward/backward the logical batch in physical chunks; clip and sum per-sample gradients."""
        if len(indices) == 0:
            optimizer.clear_batch()
            return 0.0
        chunks = list(self._chunks(indices))
        # Summed on the device and read once per step: reading each chunk's loss would wait for the GPU.
        loss_total = torch.zeros((), dtype=torch.float64, device=self.device)
        for position, chunk in enumerate(chunks):
            batch = {k: v.to(self.device) for k, v in self.data.batch(chunk.tolist()).items()}
            with autocast(self.compute.precision, self.device):
                losses = self.task.example_losses(gsm, batch)
            if isinstance(optimizer, GhostClippingDPOptimizer):
                optimizer.backward(gsm, losses)
            else:
                losses.sum().backward()
            loss_total += losses.detach().sum().double()
            if position < len(chunks) - 1:
                optimizer.signal_skip_step(do_skip=True)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
        return float(loss_total)

    def _collect_update(
        self, selection: Selection, statistics: CrossStepStatistics, optimizer: SourcedNoiseDPOptimizer
    ) -> SiloUpdate:
        lora = lora_parameters(self.model)
        factors = {
            layer: {which: lora[layer][which].detach().cpu().clone() for which in choice.factors}
            for layer, choice in sorted(selection.items())
        }
        head = {name: p.detach().cpu().clone() for name, p in head_parameters(self.model).items()}
        noise_std = optimizer.noise_std(FACTOR_CLIP_GROUP) / self.expected_batch_size
        return SiloUpdate(
            silo_id=self.silo_id,
            weight=float(self.num_examples),
            factors=factors,
            head=head,
            statistics=SiloStatistics(
                layers=statistics.finish(), steps=statistics.steps, noise_variance=noise_std**2
            ),
        )
