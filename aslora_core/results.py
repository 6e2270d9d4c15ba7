"""The results JSON of a federated run (DESIGN section 12)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aslora_core.atomic_files import SHARED_FILE_MODE, write_atomically

RESULTS_FORMAT = "aslora-results/1"


@dataclass(frozen=True)
class RoundRecord:
    """One round: evaluation on the evaluator's data, privacy spent, selection and traffic."""

    round: int
    accuracy: float
    loss: float
    epsilon: float
    b_fraction: float
    upload_bytes: int
    statistics_bytes: int
    aggregation_seconds: float
    seconds: float
    silos: list[str]
    selection: dict[str, str]
    product_error: float | None = None
    """Mean relative error of mean(B) mean(A) against mean(BA) (FedIT only)."""
    perplexity: float | None = None
    """exp(mean per-token loss) of a causal language model (None for classifiers)."""
    scores: dict[str, dict[str, list[float]]] | None = None
    """AS-LoRA only: each layer's smoothed score per factor after this round, [mean, standard error]:
    what chose the next round's factors."""


@dataclass
class RunResult:
    """A whole run: settings, per-round records and the final figures."""

    policy: str
    score: str | None
    settings: dict[str, Any]
    silo_examples: dict[str, int]
    noise_multipliers: dict[str, float]
    initial_accuracy: float | None = None
    initial_loss: float | None = None
    silo_epsilons: dict[str, float] = field(default_factory=dict)
    rounds: list[RoundRecord] = field(default_factory=list)
    wall_seconds: float = 0.0

    @property
    def epsilon(self) -> float:
        """The largest epsilon over silos."""
        return max(self.silo_epsilons.values(), default=0.0)

    @property
    def final_accuracy(self) -> float | None:
        """Accuracy after the last round."""
        return self.rounds[-1].accuracy if self.rounds else None

    def to_json(self) -> dict[str, Any]:
        """The JSON document of this run."""
        last = self.rounds[-1] if self.rounds else None
        return {
            "format": RESULTS_FORMAT,
            "policy": self.policy,
            "score": self.score,
            "final_accuracy": self.final_accuracy,
            "final_loss": last.loss if last else None,
            "initial_accuracy": self.initial_accuracy,
            "initial_loss": self.initial_loss,
            "epsilon": self.epsilon,
            "silo_epsilons": self.silo_epsilons,
            "noise_multipliers": self.noise_multipliers,
            "silo_examples": self.silo_examples,
            "wall_seconds": self.wall_seconds,
            "settings": self.settings,
            "rounds": [asdict(r) for r in self.rounds],
        }

    def write(self, path: str | Path) -> None:
        """Write the JSON atomically (temporary file, fsync, rename, fsync of the folder)."""
        write_atomically(
            Path(path), json.dumps(self.to_json(), indent=2).encode("utf-8"), mode=SHARED_FILE_MODE
        )
