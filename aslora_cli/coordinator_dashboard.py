"""`aslora coordinator dashboard`: a read-only web page of the runs, served on loopback with a per-launch
token, fed by the admin service's queries over the operator's own connection (docs/operations.md).

The web server and chart libraries (starlette, uvicorn, plotly) are imported when the command runs, so
that `--help` and the other commands never load them."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from aslora_cli.admin_connection import AdminConnection, with_connection_options
from aslora_cli.dashboard.listen import bind, loopback_listen
from aslora_coordinator.admin_reader import AdminReader

DEFAULT_LISTEN = "127.0.0.1:8787"
DEFAULT_REFRESH_SECONDS = 2.0
MIN_REFRESH_SECONDS = 0.2
"""The page asks at most this often (each refresh is a few admin queries)."""


def _announce(address: str) -> None:
    """Print the page's address at once, even when the output is a pipe."""
    typer.echo(f"dashboard (read-only, Ctrl-C to stop): {address}")
    sys.stdout.flush()


@with_connection_options
def dashboard(
    *,
    connection: AdminConnection,
    listen: Annotated[
        str,
        typer.Option(
            metavar="HOST:PORT", help="Loopback address to serve the page on (port 0: the system chooses)."
        ),
    ] = DEFAULT_LISTEN,
    refresh_seconds: Annotated[
        float, typer.Option(min=MIN_REFRESH_SECONDS, metavar="SECONDS", help="Seconds between refreshes.")
    ] = DEFAULT_REFRESH_SECONDS,
) -> None:
    """Serve a read-only page of the runs, their silos and charts of their rounds, refreshed as they go;
    it prints the address to open, with a token that this launch alone accepts."""
    endpoint = loopback_listen(listen)
    with bind(endpoint) as listening, connection.channel() as channel:
        reader = AdminReader(channel)
        reader.runs()  # The coordinator answers (and accepts these credentials) before the page is served.
        from aslora_cli.dashboard.server import serve_dashboard
        from aslora_cli.dashboard.source import DashboardSource

        serve_dashboard(DashboardSource(reader), endpoint, listening, refresh_seconds, _announce)
