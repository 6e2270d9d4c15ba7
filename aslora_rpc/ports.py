"""Listening on an address: a port that another process holds is refused naming the address."""

from __future__ import annotations

import errno
import socket

import grpc

from aslora_rpc.endpoints import Endpoint, EndpointError, PortInUseError


def in_use(endpoint: Endpoint) -> PortInUseError:
    """The error for an address that cannot be listened on because something holds it."""
    return PortInUseError(f"cannot listen on {endpoint}: the address is already in use")


def add_port(server: grpc.Server, endpoint: Endpoint, credentials: grpc.ServerCredentials | None) -> int:
    """Bind `server` to `endpoint` (TLS when `credentials` are given) and return the port bound."""
    try:
        if credentials is None:
            return server.add_insecure_port(endpoint.target)
        return server.add_secure_port(endpoint.target, credentials)
    except RuntimeError as error:
        # gRPC says only "Failed to bind"; the usual cause is a port another process holds.
        raise PortInUseError(
            f"cannot listen on {endpoint}: the address is in use, or is not an address of this machine"
        ) from error


def check_port_free(endpoint: Endpoint) -> None:
    """Raise PortInUseError if `endpoint` is held by a listener now, EndpointError if it is no address of
    this machine; port 0 (the system chooses) always passes."""
    if endpoint.port == 0:
        return
    family = socket.AF_INET6 if ":" in endpoint.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # A connection in TIME_WAIT does not stop a server from listening; only a listener does.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((endpoint.host, endpoint.port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise in_use(endpoint) from error
            raise EndpointError(f"cannot listen on {endpoint}: {error.strerror or error}") from error
