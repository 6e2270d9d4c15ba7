"""Mutual-TLS material named in a config file's [tls] table, as gRPC credentials."""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography.hazmat.primitives import serialization

from aslora_rpc.certificates import CertificateError, load_certificate

LOGGER = logging.getLogger(__name__)
FileStamp = tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class TlsFiles:
    """PEM files: the federation's CA certificate, and this process's certificate and key."""

    ca_cert: Path
    cert: Path
    key: Path

    def read(self) -> tuple[bytes, bytes, bytes]:
        """(CA certificate, certificate chain, private key) as bytes, read when a server or channel starts."""
        return self.ca_cert.read_bytes(), self.cert.read_bytes(), self.key.read_bytes()


def channel_credentials(tls: TlsFiles) -> grpc.ChannelCredentials:
    """Client credentials: trust only the federation's CA and present this process's certificate."""
    ca, chain, key = tls.read()
    return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=chain)


class ReloadingServerCredentials:
    """Server credentials that pick up renewed PEM files at the next handshake, without a restart.

    gRPC asks `fetch` before each handshake; it re-reads the files only when one of them changed, and
    switches only to a complete, consistent set (the key matches the certificate), so a renewal written
    file by file never serves a half-updated pair.
    """

    def __init__(self, tls: TlsFiles) -> None:
        """Read the files once; a missing or inconsistent set is an error at start-up."""
        self._tls = tls
        self._lock = threading.Lock()
        self._stamp = self._current_stamp()
        self._initial = self._configuration()

    def credentials(self) -> grpc.ServerCredentials:
        """gRPC server credentials that require client certificates and call `fetch` per handshake."""
        # gRPC takes None from the fetcher as "no change"; the type stub does not say so.
        return grpc.dynamic_ssl_server_credentials(
            self._initial,
            self.fetch,  # type: ignore[arg-type]
            require_client_authentication=True,
        )

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """A new configuration when the files changed and are consistent; None keeps the current one."""
        with self._lock:
            try:
                stamp = self._current_stamp()
                if stamp == self._stamp:
                    return None
                configuration = self._configuration()
            except (OSError, CertificateError) as error:
                LOGGER.warning("TLS files changed but are not usable yet (%s); kept the current ones", error)
                return None
            self._stamp = stamp
        LOGGER.info("TLS files changed: the renewed certificate and CA are served from now on")
        return configuration

    def _current_stamp(self) -> FileStamp:
        files = (self._tls.ca_cert, self._tls.cert, self._tls.key)
        return tuple((os.stat(path).st_mtime_ns, os.stat(path).st_size) for path in files)

    def _configuration(self) -> grpc.ServerCertificateConfiguration:
        ca, chain, key = self._tls.read()
        check_key_matches(chain, key)
        return grpc.ssl_server_certificate_configuration([(key, chain)], root_certificates=ca)


def check_key_matches(cert_pem: bytes, key_pem: bytes) -> None:
    """Raise CertificateError unless the private key belongs to the (first) certificate of the chain."""
    certificate = load_certificate(cert_pem)
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as error:
        raise CertificateError(f"not a PEM private key: {error}") from error
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    encoding = serialization.Encoding.DER
    if key.public_key().public_bytes(encoding, public) != certificate.public_key().public_bytes(
        encoding, public
    ):
        raise CertificateError("the private key does not belong to the certificate")
