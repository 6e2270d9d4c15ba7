"""Where the dashboard listens: a loopback address only, bound before the coordinator is asked anything."""

from __future__ import annotations

import errno
import socket

from aslora_core.mistakes import FixableError
from aslora_rpc.endpoints import Endpoint


class DashboardListenError(FixableError):
    """An address the dashboard may not or cannot listen on."""

    fix = (
        "listen on a free loopback address (--listen 127.0.0.1:PORT; port 0 lets the system choose); to "
        "see the page from another machine, forward the port with ssh -L (docs/operations.md)"
    )


def loopback_listen(text: str) -> Endpoint:
    """The `--listen` address, which must be host:port on a loopback address."""
    endpoint = Endpoint.parse(text)
    if not endpoint.is_loopback:
        raise DashboardListenError(
            f"--listen {endpoint}: the dashboard listens on loopback addresses only (127.0.0.0/8, ::1, "
            "localhost); the page is plain HTTP"
        )
    return endpoint


def bind(listen: Endpoint) -> socket.socket:
    """A listening socket on the loopback address `listen`."""
    try:
        return socket.create_server((listen.host, listen.port))
    except OSError as error:
        cause = "the address is already in use" if error.errno == errno.EADDRINUSE else str(error)
        raise DashboardListenError(f"cannot listen on {listen}: {cause}") from error
