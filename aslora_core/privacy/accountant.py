"""A silo's running privacy ledger: recorded mechanism events, epsilon so far, and atomic persistence.

The ledger on disk holds the events only (each a run of Poisson-sampled Gaussian steps, or a full-batch
evaluation release); which accountant composes them is the reader's setting, so a ledger outlives a change
of accountant.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

from aslora_core.atomic_files import write_atomically
from aslora_core.config import DEFAULT_ACCOUNTANT, AccountantKind
from aslora_core.mechanism import Mechanism
from aslora_core.privacy.analysis import epsilon_spent
from aslora_core.privacy.events import FULL_BATCH, PrivacyEvent

FORMAT_VERSION = 3
"""Version of the `to_dict` layout; bump it when the layout changes."""
EVENTS_ONLY_SINCE = 2
"""Version 1 also named the accountant kind, which its readers now ignore: the events are the same."""
MECHANISM_KEY = "mechanism"
"""Since version 3 an event may name its mechanism; an event without it (every event of versions 1 and 2)
is DP-SGD steps."""
RUN_ID_KEY = "run_id"
"""The key of an event's run in a ledger that keeps runs apart (absent: untagged)."""


def _append(history: list[PrivacyEvent], event: PrivacyEvent) -> None:
    if event.steps == 0:
        return
    last = history[-1] if history else None
    if (
        last is not None
        and last.noise_multiplier == event.noise_multiplier
        and last.sample_rate == event.sample_rate
        and last.mechanism is event.mechanism
        and last.run_id == event.run_id
    ):
        history[-1] = replace(last, steps=last.steps + event.steps)
    else:
        history.append(event)


class ChargeRecorder(Protocol):
    """Where a trainer charges its steps before it reads a record: an accountant, or a silo's ledger that
    also writes them to disk."""

    def record(self, noise_multiplier: float, sample_rate: float, steps: int = 1) -> None:
        """Add `steps` steps taken with `noise_multiplier` at `sample_rate`."""

    def epsilon(self, delta: float) -> float:
        """Epsilon spent so far at `delta`."""


def _event_dict(event: PrivacyEvent) -> dict[str, Any]:
    item: dict[str, Any] = {
        "noise_multiplier": event.noise_multiplier,
        "sample_rate": event.sample_rate,
        "steps": event.steps,
    }
    if event.mechanism is not Mechanism.DP_SGD:
        item[MECHANISM_KEY] = event.mechanism.value
    if event.run_id:
        item[RUN_ID_KEY] = event.run_id
    return item


def _event_from(item: Mapping[str, Any]) -> PrivacyEvent:
    return PrivacyEvent(
        noise_multiplier=float(item["noise_multiplier"]),
        sample_rate=float(item["sample_rate"]),
        steps=item["steps"],
        mechanism=Mechanism(item.get(MECHANISM_KEY, Mechanism.DP_SGD.value)),
        run_id=str(item.get(RUN_ID_KEY, "")),
    )


class PrivacyAccountant:
    """The DP-SGD steps a silo has taken, and the epsilon they add up to."""

    def __init__(
        self, kind: AccountantKind = DEFAULT_ACCOUNTANT, history: Iterable[PrivacyEvent] = ()
    ) -> None:
        """Start from `history` (empty by default), accounted with `kind`."""
        self.kind = AccountantKind(kind)
        self._history: list[PrivacyEvent] = []
        for event in history:
            _append(self._history, event)
        self._cached: tuple[tuple[PrivacyEvent, ...], float, float] | None = None
        """The last figure asked of this accountant: kept here too, since the coordinator reads every
        silo's epsilon every few seconds and the shared cache holds at most EPSILON_CACHE_SIZE."""

    @property
    def history(self) -> tuple[PrivacyEvent, ...]:
        """The recorded events, consecutive identical (sigma, q, run) merged."""
        return tuple(self._history)

    def of_run(self, run_id: str) -> PrivacyAccountant:
        """The events of one run only, composed by the same accountant."""
        return PrivacyAccountant(self.kind, (event for event in self._history if event.run_id == run_id))

    @property
    def run_ids(self) -> tuple[str, ...]:
        """The runs the events were taken in, in the order of their first event ("" for untagged ones)."""
        return tuple(dict.fromkeys(event.run_id for event in self._history))

    @property
    def steps_taken(self) -> int:
        """Total number of recorded steps."""
        return sum(event.steps for event in self._history)

    def record(self, noise_multiplier: float, sample_rate: float, steps: int = 1, run_id: str = "") -> None:
        """Add `steps` steps taken with `noise_multiplier` at `sample_rate` (in run `run_id`)."""
        _append(self._history, PrivacyEvent(noise_multiplier, sample_rate, steps, run_id=run_id))

    def record_evaluation(self, noise_multiplier: float, run_id: str = "") -> None:
        """Add one evaluation release: a full-batch Gaussian mechanism at `noise_multiplier` (in run
        `run_id`)."""
        _append(
            self._history, PrivacyEvent(noise_multiplier, FULL_BATCH, 1, Mechanism.EVALUATION, run_id=run_id)
        )

    def epsilon(self, delta: float) -> float:
        """Epsilon spent so far at `delta`."""
        history = self.history
        if self._cached is not None and self._cached[:2] == (history, delta):
            return self._cached[2]
        value = epsilon_spent(history, delta, self.kind)
        self._cached = (history, delta, value)
        return value

    def would_exceed(
        self,
        noise_multiplier: float,
        sample_rate: float,
        steps: int,
        delta: float,
        budget: float,
        *,
        mechanism: Mechanism = Mechanism.DP_SGD,
        run_id: str = "",
    ) -> bool:
        """Whether `steps` more releases of `mechanism` (in run `run_id`) would bring epsilon at `delta`
        above `budget`. Planned as `record` or `record_evaluation` would charge them, so the history checked
        is the one charged next, whose epsilon `epsilon_spent` then has already."""
        planned = list(self._history)
        _append(planned, PrivacyEvent(noise_multiplier, sample_rate, steps, mechanism, run_id))
        return epsilon_spent(planned, delta, self.kind) > budget

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able snapshot of the events, with its format version (the accountant kind is not in it)."""
        return {
            "format_version": FORMAT_VERSION,
            "events": [_event_dict(event) for event in self._history],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], kind: AccountantKind) -> PrivacyAccountant:
        """The events of `to_dict` output (or of a version-1 ledger), composed by the `kind` accountant;
        ValueError on an unknown version or bad content."""
        version = data.get("format_version")
        if not isinstance(version, int) or version not in range(1, FORMAT_VERSION + 1):
            raise ValueError(f"unsupported privacy ledger format version {version!r}")
        try:
            items = data["events"] if version >= EVENTS_ONLY_SINCE else data["history"]
            history = [_event_from(item) for item in items]
        except (KeyError, TypeError, AttributeError) as error:
            raise ValueError(f"malformed privacy ledger: {error!r}") from error
        return cls(kind, history)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the state to `path` atomically (temporary file, fsync, rename, fsync of the folder)."""
        write_atomically(Path(path), (json.dumps(self.to_dict(), indent=2) + "\n").encode("utf-8"))

    @classmethod
    def load(cls, path: str | os.PathLike[str], kind: AccountantKind) -> PrivacyAccountant:
        """Read the events written by `save`, composed by the `kind` accountant."""
        with Path(path).open(encoding="utf-8") as stream:
            data = json.load(stream)
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a privacy ledger must be a JSON object")
        return cls.from_dict(data, kind)
