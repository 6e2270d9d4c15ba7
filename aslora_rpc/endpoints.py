"""host:port addresses, and the rule that plaintext is allowed on loopback addresses only."""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass

from aslora_core.mistakes import FixableError

LOGGER = logging.getLogger(__name__)

LOCALHOST = "localhost"
MAX_PORT = 65535


class EndpointError(FixableError, ValueError):
    """An address that is not host:port, or plaintext asked for on a non-loopback address."""

    fix = "give the address as host:port; plaintext (--insecure) only on a loopback address, else [tls] files"


class PortInUseError(EndpointError):
    """The address to listen on is taken by another process."""

    fix = (
        "stop the process that listens there (another coordinator or silo?), or choose another port in the "
        "config ([server] listen, [health] listen or [metrics] listen; port 0 lets the system choose)"
    )


class TlsRequiredError(EndpointError):
    """A plaintext client reached a server that speaks only mutual TLS."""

    fix = (
        "connect with mutual TLS: --ca-cert, --cert and --key (or ASLORA_CA, ASLORA_CERT, ASLORA_KEY, or "
        "the operator context) instead of --insecure; a silo configures them in its [tls] table"
    )


@dataclass(frozen=True)
class Endpoint:
    """A TCP address: a host name or IP literal and a port (0 = let the system choose, for listening)."""

    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Endpoint:
        """`host:port`, `[ipv6]:port` or `ipv4:port`."""
        host, separator, port_text = text.strip().rpartition(":")
        if not separator or not host or not port_text.isdigit():
            raise EndpointError(f"{text!r} is not host:port")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        port = int(port_text)
        if port > MAX_PORT:
            raise EndpointError(f"{text!r}: port {port} is out of range")
        return cls(host=host, port=port)

    @property
    def target(self) -> str:
        """The address as gRPC expects it (IPv6 literals in brackets)."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def is_loopback(self) -> bool:
        """Whether the host is `localhost` or a loopback IP literal (127.0.0.0/8, ::1)."""
        if self.host == LOCALHOST:
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def with_port(self, port: int) -> Endpoint:
        """The same host with another port (e.g. the one the system chose)."""
        return Endpoint(host=self.host, port=port)

    def __str__(self) -> str:
        return self.target


def require_plaintext_allowed(endpoint: Endpoint, what: str) -> None:
    """Raise unless plaintext on `endpoint` stays on this machine (DESIGN 5: --insecure is loopback-only)."""
    if not endpoint.is_loopback:
        raise EndpointError(
            f"--insecure refused for {what} {endpoint}: plaintext is allowed on loopback addresses only "
            "(127.0.0.0/8, ::1, localhost); configure [tls] instead"
        )


def warn_plaintext(what: str) -> None:
    """Log, loudly, that `what` runs without TLS: no authentication, no encryption, loopback only."""
    LOGGER.warning(
        "PLAINTEXT (--insecure): %s uses no TLS; no caller is authenticated and nothing is encrypted. "
        "For development on this machine only.",
        what,
    )
