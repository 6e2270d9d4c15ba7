"""The results JSON of a federated run (DESIGN section 12)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aslora_core import federated_evaluation
from aslora_core.atomic_files import SHARED_FILE_MODE, write_atomically
from aslora_core.federated_evaluation import FederatedEvaluation

RESULTS_FORMAT = "aslora-results/1"
FEDERATED_KEY = "federated_evaluation"


class ResultsError(ValueError):
    """A document or file that is not a results JSON of RESULTS_FORMAT."""


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
    curvature: dict[str, dict[str, list[float | None]]] | None = None
    """AS-LoRA only: each layer's curvature per factor after this round, [the estimate the score used
    (null: it used the constant `curvature_scale`), the factor's smoothed secant estimate, its standard
    error] (the last two null before the factor trained)."""
    curvature_share: float | None = None
    """AS-LoRA only: the share of layer-factors whose score used an estimate rather than the constant."""
    silo_epsilons: dict[str, float] | None = None
    """Each silo's epsilon after this round, whose largest is `epsilon` (None in results written before
    it was recorded)."""


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
    federated_evaluations: list[FederatedEvaluation] = field(default_factory=list)
    """The silos' own evaluations of the global adapter, pooled from their noised releases (a run with
    silo_evaluation); beside `rounds`, which hold the coordinator's evaluation when it has a set."""

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
            FEDERATED_KEY: [federated_evaluation.to_json(e) for e in self.federated_evaluations],
        }

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> RunResult:
        """The RunResult whose `to_json()` gave `document` (its derived fields are recomputed, not read);
        ResultsError when `document` is not such a document."""
        if document.get("format") != RESULTS_FORMAT:
            raise ResultsError(f"not a results file of format {RESULTS_FORMAT}")
        try:
            return cls(
                policy=str(document["policy"]),
                score=document["score"],
                settings=dict(document["settings"]),
                silo_examples=dict(document["silo_examples"]),
                noise_multipliers=dict(document["noise_multipliers"]),
                initial_accuracy=document["initial_accuracy"],
                initial_loss=document["initial_loss"],
                silo_epsilons=dict(document["silo_epsilons"]),
                rounds=[RoundRecord(**record) for record in document["rounds"]],
                wall_seconds=float(document["wall_seconds"]),
                # Results written before silos evaluated have no such key.
                federated_evaluations=[
                    federated_evaluation.from_json(item) for item in document.get(FEDERATED_KEY, [])
                ],
            )
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise ResultsError(f"malformed results ({error!r})") from error

    def write(self, path: str | Path) -> None:
        """Write the JSON atomically (temporary file, fsync, rename, fsync of the folder)."""
        write_atomically(
            Path(path), json.dumps(self.to_json(), indent=2).encode("utf-8"), mode=SHARED_FILE_MODE
        )


def read_results(path: Path) -> RunResult:
    """The run of the results file at `path` (`aslora simulate --output`, the coordinator's
    `results_path`); ResultsError, naming the file, when it is unreadable or not a results file."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ResultsError(f"{path}: {error}") from error
    if not isinstance(document, dict):
        raise ResultsError(f"{path}: not a results file of format {RESULTS_FORMAT}")
    try:
        return RunResult.from_json(document)
    except ResultsError as error:
        raise ResultsError(f"{path}: {error}") from error
