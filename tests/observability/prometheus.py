"""A real Prometheus server for the end-to-end metrics test: loopback only, data in a temporary folder,
stopped by its owner.

The binary comes from Debian's `prometheus` package, installed by deploy/install_prometheus.py where it is
missing and the test runs as root; elsewhere the test skips, unless ASLORA_REQUIRE_PROMETHEUS=1 (set by
.ci/run) turns the skip into a failure.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from deploy import install_prometheus
from deploy.debian_packages import can_install

REQUIRE_VARIABLE = "ASLORA_REQUIRE_PROMETHEUS"
SCRAPE_INTERVAL = "1s"
READY_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 15.0
HTTP_TIMEOUT_SECONDS = 5.0
POLL_SECONDS = 0.5
LOOPBACK = "127.0.0.1"
Series = tuple[dict[str, str], float]
"""One result of an instant query: the series' labels and its value."""


def prometheus_binary() -> str:
    """The prometheus binary, installed first where possible; skip (or fail when required) without one."""
    found = install_prometheus.prometheus_binary()
    if found is None and can_install():
        install_prometheus.install()
        found = install_prometheus.prometheus_binary()
    if found is None:
        reason = "no prometheus binary, and not root with apt-get to install Debian's package"
        if os.environ.get(REQUIRE_VARIABLE) == "1":
            pytest.fail(f"{REQUIRE_VARIABLE}=1 but {reason}")
        pytest.skip(reason)
    return found


def free_loopback_port() -> int:
    """A port free on loopback right now (the system's choice for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
        return port


def scrape_config(jobs: Mapping[str, Sequence[str]]) -> str:
    """prometheus.yml scraping each job's host:port targets every second (JSON is valid YAML)."""
    return json.dumps(
        {
            "global": {"scrape_interval": SCRAPE_INTERVAL, "scrape_timeout": SCRAPE_INTERVAL},
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": list(targets)}]}
                for job, targets in jobs.items()
            ],
        },
        indent=2,
    )


class PrometheusServer:
    """One Prometheus process on a free loopback port, scraping the given jobs."""

    def __init__(self, binary: str, work: Path, jobs: Mapping[str, Sequence[str]]) -> None:
        """Write the config, start the server and wait until it is ready."""
        work.mkdir(parents=True, exist_ok=True)
        config = work / "prometheus.yml"
        config.write_text(scrape_config(jobs))
        self.log = work / "prometheus.log"
        self.address = f"{LOOPBACK}:{free_loopback_port()}"
        with self.log.open("wb") as stream:
            self.process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={work / 'data'}",
                    f"--web.listen-address={self.address}",
                    "--log.level=warn",
                ],
                stdout=stream,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=work,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        give_up = time.monotonic() + READY_TIMEOUT_SECONDS
        while True:
            assert self.process.poll() is None, f"prometheus exited:\n{self.log.read_text()}"
            try:
                with urllib.request.urlopen(f"http://{self.address}/-/ready", timeout=HTTP_TIMEOUT_SECONDS):
                    return
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < give_up, f"prometheus not ready:\n{self.log.read_text()}"
                time.sleep(POLL_SECONDS)

    def api(self, path: str, **parameters: str) -> Any:
        """GET /api/v1/PATH and return its `data` (the call must succeed)."""
        query = urllib.parse.urlencode(parameters)
        url = f"http://{self.address}/api/v1/{path}?{query}"
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_SECONDS) as response:
            document = json.loads(response.read())
        assert document["status"] == "success", document
        return document["data"]

    def query(self, expression: str) -> list[Series]:
        """An instant query's vector: labels (with __name__ when kept) and value of each series."""
        data = self.api("query", query=expression)
        assert data["resultType"] == "vector", data
        return [(item["metric"], float(item["value"][1])) for item in data["result"]]

    def wait_for(
        self, expression: str, accept: Callable[[list[Series]], bool], timeout: float
    ) -> list[Series]:
        """Query until `accept` takes the result (new scrapes arrive every second); fail at the timeout."""
        give_up = time.monotonic() + timeout
        while True:
            result = self.query(expression)
            if accept(result):
                return result
            assert time.monotonic() < give_up, f"{expression}: {result}\n{self.log.read_text()[-2000:]}"
            time.sleep(POLL_SECONDS)

    def stop(self) -> None:
        """Terminate the server and wait for it (killed if it does not stop in time)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
