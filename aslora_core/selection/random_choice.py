"""Random ablation: each layer trains A or B at random each round, drawn statelessly from (seed, round)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Self

import numpy as np

from aslora_core.config import ScoreSettings
from aslora_core.factor_choice import FactorChoice
from aslora_core.policy_traits import RANDOM
from aslora_core.selection.base import SelectionPolicy

SEED_KEY = "seed"


class RandomPolicy(SelectionPolicy):
    """Round 0 B; afterwards a fair coin per layer from a generator seeded by (seed, round)."""

    traits = RANDOM

    def __init__(self, layer_names: Sequence[str], seed: int) -> None:
        super().__init__(layer_names)
        if seed < 0:
            raise ValueError(f"seed must be non-negative, got {seed}")
        self.seed = seed

    @classmethod
    def create(cls, layer_names: Sequence[str], score: ScoreSettings, seed: int, scaling: float) -> Self:
        """A random policy driven by `seed`."""
        del score, scaling
        return cls(layer_names, seed)

    def _choose(self, round_index: int) -> dict[str, FactorChoice]:
        if round_index == 0:
            return self._uniform(FactorChoice.B)
        coins = np.random.default_rng([self.seed, round_index]).integers(0, 2, size=len(self.layer_names))
        return {
            name: FactorChoice.A if coin else FactorChoice.B
            for name, coin in zip(self.layer_names, coins.tolist(), strict=True)
        }

    def state_dict(self) -> dict[str, object]:
        """The policy name and the seed."""
        return {**super().state_dict(), SEED_KEY: self.seed}

    def load_state_dict(self, state: Mapping[str, object]) -> None:
        """Restore the seed."""
        super().load_state_dict(state)
        seed = state.get(SEED_KEY)
        if not isinstance(seed, int) or seed < 0:
            raise ValueError(f"random policy state needs a non-negative integer seed, got {seed!r}")
        self.seed = seed
