"""The Grafana dashboard in deploy/grafana: its PromQL expressions and the metric names they use."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "aslora-dashboard.json"
METRIC_NAME = re.compile(r"\baslora_[a-z0-9_]+\b")
GRAFANA_RATE_INTERVAL = "$__rate_interval"
RATE_WINDOW_FOR_TESTS = "1m"
"""What `$__rate_interval` becomes when the test runs an expression against Prometheus directly."""


def expressions() -> list[str]:
    """Every `expr` of every panel target, in panel order."""
    document: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in document["panels"] for target in panel.get("targets", [])]


def metric_names(expression: str) -> set[str]:
    """The aslora_ metric names an expression reads."""
    return set(METRIC_NAME.findall(expression))


def runnable(expression: str) -> str:
    """The expression with Grafana's variables replaced, for Prometheus's own query API."""
    return expression.replace(GRAFANA_RATE_INTERVAL, RATE_WINDOW_FOR_TESTS)
