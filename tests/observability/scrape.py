"""Read a process's /metrics page the way Prometheus does (the text exposition format)."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families

SCRAPE_TIMEOUT_SECONDS = 10.0
Sample = tuple[str, frozenset[tuple[str, str]]]
"""A series: its sample name and its labels."""


def scrape(target: str) -> dict[Sample, float]:
    """Every sample of `http://TARGET/metrics`, by sample name and labels."""
    with urllib.request.urlopen(f"http://{target}/metrics", timeout=SCRAPE_TIMEOUT_SECONDS) as response:
        text = response.read().decode("utf-8")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict[Sample, float], name: str, **labels: str) -> float:
    """The value of one series (KeyError when it is not exposed)."""
    return samples[(name, frozenset(labels.items()))]


def names(samples: dict[Sample, float]) -> set[str]:
    """The sample names exposed (e.g. `aslora_rounds_completed_total`, `..._bucket`)."""
    return {name for name, _ in samples}
