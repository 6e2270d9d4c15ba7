"""Serving the dashboard: a per-launch token, a loopback socket, uvicorn until the operator stops it."""

from __future__ import annotations

import contextlib
import secrets
import signal
import socket
from collections.abc import Callable

import uvicorn

from aslora_cli.dashboard.app import TOKEN_PARAMETER, dashboard_app
from aslora_cli.dashboard.listen import DashboardListenError
from aslora_cli.dashboard.source import DashboardSource
from aslora_rpc.endpoints import LOCALHOST, Endpoint

TOKEN_BYTES = 32
"""Random bytes in the token (secrets.token_urlsafe: 43 URL-safe characters)."""
LOOPBACK_HOSTS = [LOCALHOST, "127.0.0.1", "::1"]
"""Host headers accepted besides the listening address's own (an ssh tunnel's local end)."""


def bind(listen: Endpoint) -> socket.socket:
    """A listening socket on `listen` (a loopback address, checked at the command line)."""
    try:
        return socket.create_server((listen.host, listen.port))
    except OSError as error:
        raise DashboardListenError(f"cannot listen on {listen}: {error.strerror}") from error


def page_address(listen: Endpoint, token: str) -> str:
    """The address to open, token included."""
    return f"http://{listen.target}/?{TOKEN_PARAMETER}={token}"


def serve_dashboard(
    source: DashboardSource, listen: Endpoint, refresh_seconds: float, announce: Callable[[str], None]
) -> None:
    """Serve the page on `listen` until interrupted (SIGINT or SIGTERM); `announce` gets its address."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    with bind(listen) as listening:
        bound = listen.with_port(listening.getsockname()[1])
        app = dashboard_app(source, token, refresh_seconds, [listen.host, *LOOPBACK_HOSTS])
        # No access log: every request's address holds the token.
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        announce(page_address(bound, token))
        # uvicorn shuts down gracefully on either signal, then raises it again once done: both end here.
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        with contextlib.suppress(KeyboardInterrupt):
            uvicorn.Server(config).run(sockets=[listening])
