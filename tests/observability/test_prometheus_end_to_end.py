"""A real Prometheus server scrapes the coordinator and both silos of a real short run; its query API
returns the run's figures, and every query of the Grafana dashboard returns data."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.observability.dashboard import expressions, runnable
from tests.observability.federation import LOCAL_STEPS, ROUNDS, SILO_NAMES, ShortRun
from tests.observability.prometheus import PrometheusServer, Series, prometheus_binary

COORDINATOR_JOB = "aslora-coordinator"
SILO_JOB = "aslora-silo"
SCRAPED_TIMEOUT_SECONDS = 30.0


@pytest.fixture(scope="module")
def prometheus(short_run: ShortRun, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    """Prometheus scraping the run's three endpoints every second, until every target has been scraped."""
    binary = prometheus_binary()
    jobs = {
        COORDINATOR_JOB: [short_run.coordinator_target],
        SILO_JOB: sorted(short_run.silo_targets.values()),
    }
    server = PrometheusServer(binary, tmp_path_factory.mktemp("prometheus"), jobs)
    try:
        server.wait_for("up == 1", lambda result: len(result) == 1 + len(SILO_NAMES), SCRAPED_TIMEOUT_SECONDS)
        yield server
    finally:
        server.stop()
    assert server.process.returncode is not None


def _one(result: list[Series]) -> float:
    assert len(result) == 1, result
    return result[0][1]


def test_prometheus_sees_the_rounds_and_updates_of_the_run(prometheus: PrometheusServer) -> None:
    rounds = prometheus.query(f'aslora_rounds_completed_total{{job="{COORDINATOR_JOB}"}}')
    assert _one(rounds) == ROUNDS
    assert _one(prometheus.query('aslora_updates_total{outcome="accepted"}')) == ROUNDS * len(SILO_NAMES)
    assert _one(prometheus.query("aslora_silos_connected")) == len(SILO_NAMES)
    assert _one(prometheus.query("aslora_round_duration_seconds_count")) == ROUNDS
    assert _one(prometheus.query("aslora_update_bytes_total")) > 0


def test_prometheus_sees_each_silos_epsilon_and_steps(prometheus: PrometheusServer) -> None:
    ledger = {labels["silo"]: value for labels, value in prometheus.query("aslora_privacy_epsilon")}
    assert sorted(ledger) == sorted(SILO_NAMES)
    steps = prometheus.query(f'aslora_silo_dp_steps_total{{job="{SILO_JOB}"}}')
    assert len(steps) == len(SILO_NAMES)
    assert all(value == ROUNDS * LOCAL_STEPS for _, value in steps)
    own = sorted(value for _, value in prometheus.query("aslora_silo_epsilon"))
    assert own == pytest.approx(sorted(ledger.values()), rel=1e-9)


def test_every_dashboard_query_returns_data(prometheus: PrometheusServer) -> None:
    for expression in expressions():
        # Rates need two scrapes in their window; the fixture has waited for the first one.
        result = prometheus.wait_for(runnable(expression), bool, SCRAPED_TIMEOUT_SECONDS)
        assert result, expression
