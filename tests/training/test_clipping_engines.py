"""Clipping engines: ghost clipping gives the hooks engine's step, with or without gradient checkpointing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from aslora_core.adapters import read_adapter
from aslora_core.config import ClippingEngine, ClippingMode, ComputeSettings, ConfigError, Precision
from aslora_core.factor_choice import FactorChoice
from aslora_core.factors import SiloUpdate
from aslora_core.training.checkpointing import enable_gradient_checkpointing
from tests.training.helpers import encoded_texts, make_trainer, tiny_lora_model, with_nonzero_b

ENGINE_TOLERANCE = 1e-5
"""Relative distance allowed between the two engines' updates (float32 sums in another order)."""
CLIP_NORM = 0.05
HEAD_CLIP_NORM = 0.02
"""Small enough that most examples are clipped in both groups, so the clipping itself is compared."""


def _update(
    model_dir: Path,
    engine: ClippingEngine,
    sigma: float,
    clipping: ClippingMode = ClippingMode.TRAINED,
    head_clip: float | None = None,
    *,
    precision: Precision = Precision.FLOAT32,
    checkpointing: bool = False,
) -> SiloUpdate:
    model = tiny_lora_model(model_dir, precision=precision)
    state = with_nonzero_b(read_adapter(model))
    trainer = make_trainer(
        model,
        encoded_texts(model_dir, 24),
        clip_norm=CLIP_NORM,
        head_clip_norm=head_clip,
        clipping=clipping,
        precision=precision,
        clipping_engine=engine,
        gradient_checkpointing=checkpointing,
    )
    selection = dict.fromkeys(state.layer_names, FactorChoice.B)
    return trainer.train_round(0, state, selection, noise_multiplier=sigma).update


def _flat(update: SiloUpdate) -> torch.Tensor:
    factors = [t.flatten() for _, per in sorted(update.factors.items()) for _, t in sorted(per.items())]
    return torch.cat([*factors, *(t.flatten() for _, t in sorted(update.head.items()))])


@pytest.mark.parametrize(
    ("sigma", "clipping", "head_clip"),
    [
        (0.0, ClippingMode.TRAINED, None),
        (1.0, ClippingMode.TRAINED, HEAD_CLIP_NORM),
        (0.0, ClippingMode.JOINT, HEAD_CLIP_NORM),
    ],
)
def test_ghost_clipping_gives_the_hooks_engines_step(
    tiny_model_dir: Path, sigma: float, clipping: ClippingMode, head_clip: float | None
) -> None:
    hooks = _update(tiny_model_dir, ClippingEngine.HOOKS, sigma, clipping, head_clip)
    ghost = _update(tiny_model_dir, ClippingEngine.GHOST, sigma, clipping, head_clip)
    expected, found = _flat(hooks), _flat(ghost)
    assert float((found - expected).norm() / expected.norm()) <= ENGINE_TOLERANCE
    assert hooks.statistics is not None and ghost.statistics is not None
    assert hooks.statistics.layers.keys() == ghost.statistics.layers.keys()


@pytest.mark.parametrize(
    ("engine", "precision"),
    [
        (ClippingEngine.HOOKS, Precision.FLOAT32),
        (ClippingEngine.GHOST, Precision.FLOAT32),
        (ClippingEngine.HOOKS, Precision.BFLOAT16),
    ],
)
def test_gradient_checkpointing_gives_the_same_step(
    tiny_model_dir: Path, engine: ClippingEngine, precision: Precision
) -> None:
    """Recomputed segments are not captured twice: the step is the one without checkpointing."""
    plain = _flat(_update(tiny_model_dir, engine, 1.0, precision=precision))
    checkpointed = _flat(_update(tiny_model_dir, engine, 1.0, precision=precision, checkpointing=True))
    assert float((checkpointed - plain).norm() / plain.norm()) <= ENGINE_TOLERANCE


def test_gradient_checkpointing_without_a_transformer_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"\[training\] gradient_checkpointing"):
        enable_gradient_checkpointing(torch.nn.Sequential(torch.nn.Linear(2, 2)))


def test_ghost_clipping_in_bfloat16_is_refused_naming_the_pair() -> None:
    with pytest.raises(ConfigError, match=r'clipping_engine = "ghost" with precision = "bfloat16"'):
        ComputeSettings(precision=Precision.BFLOAT16, clipping_engine=ClippingEngine.GHOST)
