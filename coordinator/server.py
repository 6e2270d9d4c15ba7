"""The one server factory: credentials, message sizes, keepalive, interceptors, and the health port."""

from __future__ import annotations

from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2_grpc

from aslora_coordinator.authorization import AuthorizationInterceptor, DenyList
from aslora_coordinator.config import SecuritySettings, ServerSettings
from aslora_coordinator.error_interceptor import ErrorCatalogInterceptor
from aslora_rpc.endpoints import (
    Endpoint,
    EndpointError,
    PortInUseError,
    require_plaintext_allowed,
    warn_plaintext,
)
from aslora_rpc.health import HealthEndpoint
from aslora_rpc.options import server_options
from aslora_rpc.ports import add_port
from aslora_rpc.tls import ReloadingServerCredentials

Registration = Callable[[grpc.Server], None]
"""Adds one servicer to a server (e.g. a generated add_*Servicer_to_server bound to its servicer)."""


@dataclass
class RunningServer:
    """The main server, the address it is bound to, and its separate plaintext health endpoint."""

    server: grpc.Server
    endpoint: Endpoint
    health: HealthEndpoint

    def stop(self, grace_seconds: float) -> None:
        """Report NOT_SERVING, let calls in flight finish for `grace_seconds`, then stop both servers."""
        self.health.set_serving(False)
        self.server.stop(grace_seconds).wait()
        self.health.stop()


def start_server(
    settings: ServerSettings,
    security: SecuritySettings,
    registrations: list[Registration],
    *,
    insecure: bool,
) -> RunningServer:
    """Bind and start the main server and the health endpoint; both report NOT_SERVING until the caller
    says otherwise. With mutual TLS every call is authenticated and authorized by role first; plaintext
    (--insecure) is for loopback addresses only and trusts every caller."""
    interceptors: list[grpc.ServerInterceptor] = [ErrorCatalogInterceptor()]
    credentials = None
    if insecure:
        require_plaintext_allowed(settings.listen, "the listen address")
        warn_plaintext(f"the coordinator on {settings.listen}")
    elif settings.tls is None:
        raise EndpointError("no [tls] files configured: give them, or --insecure on a loopback address")
    else:
        credentials = ReloadingServerCredentials(settings.tls).credentials()
        interceptors.append(
            AuthorizationInterceptor(DenyList(security.revocation_list), security.allowed_silos)
        )
    health = HealthEndpoint(settings.health)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=settings.max_workers, thread_name_prefix="grpc"),
        interceptors=interceptors,
        options=server_options(),
    )
    for register in registrations:
        register(server)
    # The main port answers health checks too, for clients that already hold a channel.
    health_pb2_grpc.add_HealthServicer_to_server(health.servicer, server)
    try:
        port = add_port(server, settings.listen, credentials)
    except PortInUseError:
        health.stop()
        raise
    server.start()
    return RunningServer(server=server, endpoint=settings.listen.with_port(port), health=health)
