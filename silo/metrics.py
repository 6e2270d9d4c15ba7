"""The silo's Prometheus metrics (DESIGN section 7), served on the silo's own endpoint only.

These numbers depend on the silo's private data (how many examples a round saw, how fast it trained), so
they never travel to the coordinator: an institution decides itself who may scrape its `[metrics] listen`
address. Every name starts with `aslora_silo_`; there are no labels (one silo per process).

When metrics are served, the bound port is written to `STATE_DIR/metrics-port.json` as
`{"metrics": PORT}`, for launchers that bind port 0 (as the coordinator's `port_file` does).
"""

from __future__ import annotations

import json
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge

from aslora_core.atomic_files import write_atomically
from aslora_core.training import LocalResult
from aslora_rpc.endpoints import Endpoint
from aslora_rpc.metrics_endpoint import MetricsEndpoint

PORT_FILE = "metrics-port.json"


class SiloMetrics:
    """The silo's metric families, in a registry owned by this object."""

    def __init__(self) -> None:
        """Create the families; nothing is served until `serve`."""
        self.registry = CollectorRegistry(auto_describe=True)
        self.dp_steps = Counter(
            "aslora_silo_dp_steps",
            "DP-SGD steps (logical batches, each clipped and noised) this silo has taken.",
            registry=self.registry,
        )
        self.samples_per_second = Gauge(
            "aslora_silo_samples_per_second",
            "Training examples per second in the last local round (DP overhead included).",
            registry=self.registry,
        )
        self.epsilon = Gauge(
            "aslora_silo_epsilon",
            "Epsilon this silo has spent by its own accountant at the run's delta.",
            registry=self.registry,
        )

    def round_trained(self, result: LocalResult, seconds: float, epsilon: float) -> None:
        """One local round: its steps, its throughput over `seconds`, and the epsilon after it."""
        self.dp_steps.inc(result.steps)
        if seconds > 0:
            self.samples_per_second.set(result.examples_seen / seconds)
        self.epsilon.set(epsilon)

    def serve(self, listen: Endpoint | None, state_dir: Path) -> MetricsEndpoint | None:
        """Serve the registry on `listen` and write the bound port into `state_dir` (None: not served)."""
        if listen is None:
            return None
        endpoint = MetricsEndpoint(listen, self.registry)
        write_atomically(
            state_dir / PORT_FILE, json.dumps({"metrics": endpoint.endpoint.port}).encode("utf-8")
        )
        return endpoint
