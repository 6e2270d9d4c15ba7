"""Mutual-TLS material named in a config file's [tls] table, as gRPC credentials."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc


@dataclass(frozen=True)
class TlsFiles:
    """PEM files: the federation's CA certificate, and this process's certificate and key."""

    ca_cert: Path
    cert: Path
    key: Path

    def read(self) -> tuple[bytes, bytes, bytes]:
        """(CA certificate, certificate chain, private key) as bytes, read when a server or channel starts."""
        return self.ca_cert.read_bytes(), self.cert.read_bytes(), self.key.read_bytes()


def server_credentials(tls: TlsFiles) -> grpc.ServerCredentials:
    """Server credentials that demand a client certificate signed by the federation's CA."""
    ca, chain, key = tls.read()
    return grpc.ssl_server_credentials([(key, chain)], root_certificates=ca, require_client_auth=True)


def channel_credentials(tls: TlsFiles) -> grpc.ChannelCredentials:
    """Client credentials: trust only the federation's CA and present this process's certificate."""
    ca, chain, key = tls.read()
    return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=chain)
