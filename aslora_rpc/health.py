"""The standard gRPC health service (grpc.health.v1) on its own plaintext port, for Kubernetes probes."""

from __future__ import annotations

from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from aslora_rpc.endpoints import Endpoint
from aslora_rpc.ports import add_port

HEALTH_WORKERS = 2
OVERALL = ""
"""The health-service name that stands for the process as a whole (what the chart's probes ask)."""


class HealthEndpoint:
    """A plaintext server that answers health checks and nothing else; its status follows the process."""

    def __init__(self, listen: Endpoint) -> None:
        """Bind `listen` (port 0 picks a free port) and start serving NOT_SERVING until told otherwise."""
        self.servicer = health.HealthServicer()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=HEALTH_WORKERS))
        health_pb2_grpc.add_HealthServicer_to_server(self.servicer, self._server)
        port = add_port(self._server, listen, None)
        self.endpoint = listen.with_port(port)
        self.set_serving(False)
        self._server.start()

    def set_serving(self, serving: bool) -> None:
        """Report SERVING or NOT_SERVING for the process as a whole."""
        status = (
            health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        self.servicer.set(OVERALL, status)

    def stop(self, grace_seconds: float = 0.0) -> None:
        """Answer NOT_SERVING to watchers, then stop the server."""
        self.servicer.enter_graceful_shutdown()
        self._server.stop(grace_seconds).wait()
