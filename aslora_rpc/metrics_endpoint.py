"""A plain-HTTP Prometheus endpoint (`GET /metrics`) for one process's own metric registry.

Each process (coordinator or silo) keeps its metrics in its own `CollectorRegistry`, never in
prometheus-client's global default, so that several coordinators and silos can live in one test process
without their series mixing. The endpoint serves that registry on the `[metrics] listen` address; port 0
lets the system choose, and `endpoint` tells which port it chose.
"""

from __future__ import annotations

import errno
import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server

from aslora_rpc.endpoints import Endpoint
from aslora_rpc.ports import in_use

STOP_JOIN_SECONDS = 5.0
"""How long `stop` waits for the serving thread to finish."""


class MetricsEndpoint:
    """Serves one registry over HTTP on a daemon thread until `stop`."""

    def __init__(self, listen: Endpoint, registry: CollectorRegistry) -> None:
        """Bind `listen` and start serving at once."""
        try:
            server, thread = start_http_server(listen.port, addr=listen.host, registry=registry)
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise in_use(listen) from error
            raise
        self._server: WSGIServer = server
        self._thread: threading.Thread = thread
        self.endpoint = listen.with_port(server.server_port)

    @property
    def url(self) -> str:
        """The address of the metrics page, e.g. `http://127.0.0.1:9464/metrics`."""
        return f"http://{self.endpoint.target}/metrics"

    def stop(self) -> None:
        """Stop serving and release the port (idempotent)."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(STOP_JOIN_SECONDS)
        self._server.server_close()
