"""Client channels to the coordinator: mutual TLS, or plaintext on loopback with an explicit --insecure."""

from __future__ import annotations

import grpc

from aslora_rpc.endpoints import Endpoint, EndpointError, require_plaintext_allowed, warn_plaintext
from aslora_rpc.options import channel_options
from aslora_rpc.tls import TlsFiles, channel_credentials


def open_channel(
    endpoint: Endpoint, tls: TlsFiles | None, *, insecure: bool, server_name: str | None = None
) -> grpc.Channel:
    """A channel to `endpoint`; plaintext only when `insecure` and the address is loopback."""
    if insecure:
        require_plaintext_allowed(endpoint, "the coordinator address")
        warn_plaintext(f"the channel to {endpoint}")
        return grpc.insecure_channel(endpoint.target, options=channel_options())
    if tls is None:
        raise EndpointError("no [tls] files configured: give them, or --insecure on a loopback address")
    return grpc.secure_channel(
        endpoint.target, channel_credentials(tls), options=channel_options(server_name)
    )
