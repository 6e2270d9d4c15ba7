"""Whether a server speaks TLS, asked with one handshake: how a plaintext client learns that the
coordinator it cannot reach requires mutual TLS."""

from __future__ import annotations

import contextlib
import socket
import ssl

from aslora_rpc.endpoints import Endpoint
from aslora_rpc.tls import TlsFiles

PROBE_TIMEOUT_SECONDS = 2.0
HTTP2 = "h2"
"""The protocol a gRPC server expects a TLS client to offer (ALPN)."""
SERVER_ALERT = "ALERT"
"""In an SSLError's reason when the server answered the handshake with a TLS alert (e.g. the client
certificate it requires is missing): the server speaks TLS."""


def speaks_tls(
    endpoint: Endpoint, tls: TlsFiles | None = None, timeout: float = PROBE_TIMEOUT_SECONDS
) -> bool | None:
    """True if `endpoint` answers a TLS handshake, False if it answers but not with TLS, None if it cannot
    be reached. Nothing is verified: the answer only tells which protocol the server speaks. With `tls`,
    the client's certificate is presented, so that a mutual-TLS server completes the handshake instead of
    logging a client without one."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols([HTTP2])
    if tls is not None:
        # Unusable files: probe without them (the check of the TLS files names the problem).
        with contextlib.suppress(ssl.SSLError, OSError):
            context.load_cert_chain(tls.cert, tls.key)
    try:
        connection = socket.create_connection((endpoint.host, endpoint.port), timeout=timeout)
    except OSError:
        return None
    with connection:
        try:
            with context.wrap_socket(connection, server_hostname=endpoint.host):
                return True
        except ssl.SSLError as error:
            return SERVER_ALERT in str(error.reason or "").upper()
        except OSError:
            return False
