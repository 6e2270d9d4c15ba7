"""The run's federation settings: which rounds are evaluated, and the interval validated at the edge."""

from __future__ import annotations

import pytest

from aslora_core.config import ConfigError, FederationSettings


@pytest.mark.parametrize(
    ("rounds", "interval", "evaluated"),
    [(7, 3, [2, 5, 6]), (4, 1, [0, 1, 2, 3]), (3, 5, [2]), (6, 2, [1, 3, 5])],
)
def test_the_evaluated_rounds_are_every_interval_and_the_last(
    rounds: int, interval: int, evaluated: list[int]
) -> None:
    federation = FederationSettings(rounds=rounds, evaluation_interval=interval)
    assert [r for r in range(rounds) if federation.evaluates_after(r)] == evaluated


def test_an_interval_below_one_is_refused() -> None:
    with pytest.raises(ConfigError, match="evaluation_interval must be at least 1"):
        FederationSettings(evaluation_interval=0)
