"""Serving the dashboard: a per-launch token, uvicorn on the bound loopback socket until the operator stops
it."""

from __future__ import annotations

import contextlib
import secrets
import signal
import socket
from collections.abc import Callable

import uvicorn

from aslora_cli.dashboard.app import TOKEN_PARAMETER, dashboard_app
from aslora_cli.dashboard.source import DashboardSource
from aslora_rpc.endpoints import Endpoint

TOKEN_BYTES = 32
"""Random bytes in the token (secrets.token_urlsafe: 43 URL-safe characters)."""


def page_address(listen: Endpoint, token: str) -> str:
    """The address to open, token included."""
    return f"http://{listen.target}/?{TOKEN_PARAMETER}={token}"


def serve_dashboard(
    source: DashboardSource,
    listen: Endpoint,
    listening: socket.socket,
    refresh_seconds: float,
    announce: Callable[[str], None],
) -> None:
    """Serve the page on `listening`, bound to `listen`, until interrupted (SIGINT or SIGTERM); `announce`
    gets the address to open."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    bound = listen.with_port(listening.getsockname()[1])
    app = dashboard_app(source, token, refresh_seconds)
    # No access log: every request's address holds the token.
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    announce(page_address(bound, token))
    # uvicorn shuts down gracefully on either signal, then raises it again once done: both end here.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with contextlib.suppress(KeyboardInterrupt):
        uvicorn.Server(config).run(sockets=[listening])
