"""What `aslora coordinator status` and `privacy` show of the silos' evaluation releases."""

from __future__ import annotations

from collections.abc import Sequence

from aslora_coordinator.views import FederatedStatusView, PrivacyEventView
from aslora_core.mechanism import Mechanism


def federated_fields(view: FederatedStatusView | None) -> list[tuple[str, object]]:
    """The status lines of the silos' pooled evaluation (none before the silos first evaluated)."""
    if view is None:
        return []
    return [
        ("federated accuracy", view.accuracy),
        ("federated loss", view.loss),
        (
            "federated from",
            f"{view.silos_released} of {view.silos_asked} silos, after round {view.round_index}",
        ),
    ]


def training_steps(events: Sequence[PrivacyEventView]) -> int:
    """DP-SGD steps in a silo's ledger line."""
    return sum(event.steps for event in events if event.mechanism is Mechanism.DP_SGD)


def evaluation_releases(events: Sequence[PrivacyEventView]) -> int:
    """Evaluation releases in a silo's ledger line."""
    return sum(event.steps for event in events if event.mechanism is Mechanism.EVALUATION)
