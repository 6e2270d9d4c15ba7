"""What the silo agent reports while it trains, for whoever shows it (the command line, a test)."""

from __future__ import annotations

from typing import Protocol


class TrainingProgress(Protocol):
    """Told when a round's local training starts, after each DP-SGD step, and when the round is done."""

    def round_started(self, round_index: int, steps: int) -> None:
        """Local training of `round_index` begins; it will take `steps` DP-SGD steps."""
        ...

    def step_done(self, steps_done: int) -> None:
        """`steps_done` steps of the current round are done."""
        ...

    def round_finished(self, round_index: int, epsilon: float) -> None:
        """The round's update is trained; this silo's epsilon is now `epsilon`."""
        ...
