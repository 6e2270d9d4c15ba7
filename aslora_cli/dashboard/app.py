"""The dashboard's web application: GET routes only, every one refused without the launch's token; the data
routes are answered from the admin service's queries alone.

Routes: the page (`/`), its script and style, plotly.js (served from the `plotly` package, so the page
needs no network), and two JSON documents that the page polls: the runs, and one run's status, silos and
charts."""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from dataclasses import asdict
from importlib import resources
from string import Template
from typing import Any

import grpc
from plotly.offline import get_plotlyjs
from plotly.utils import PlotlyJSONEncoder
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from aslora_cli.dashboard.figures import run_figures
from aslora_cli.dashboard.source import DashboardSource
from aslora_coordinator.views import SiloView

TOKEN_PARAMETER = "token"
RUN_PARAMETER = "run"
PAGE_PACKAGE = "aslora_cli.dashboard"
JSON_TYPE = "application/json"
HTML_TYPE = "text/html; charset=utf-8"
SCRIPT_TYPE = "text/javascript; charset=utf-8"
STYLE_TYPE = "text/css; charset=utf-8"
OK = 200
FORBIDDEN = 403
BAD_GATEWAY = 502
MILLISECONDS = 1000
REFUSAL = "forbidden: open the address with the token that `aslora coordinator dashboard` printed\n"
SECURITY_HEADERS = {
    # The token is in the page's address: no other site may learn it from a Referer header.
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "frame-ancestors 'none'; form-action 'none'"
    ),
}
"""Sent with every answer."""


class TokenCheck(BaseHTTPMiddleware):
    """Refuses (403) every request whose `token` parameter is not the launch's token."""

    def __init__(self, app: Any, token: str) -> None:
        super().__init__(app)
        self._token = token.encode("ascii")

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        """Pass on a request that carries the token, refuse any other; security headers on both."""
        given = request.query_params.get(TOKEN_PARAMETER, "").encode("utf-8")
        if hmac.compare_digest(given, self._token):
            response = await call_next(request)
        else:
            response = PlainTextResponse(REFUSAL, status_code=FORBIDDEN)
        response.headers.update(SECURITY_HEADERS)
        return response


def _page_file(name: str) -> str:
    return (resources.files(PAGE_PACKAGE) / name).read_text(encoding="utf-8")


def _json(document: Any, status_code: int = OK) -> Response:
    return Response(json.dumps(document, cls=PlotlyJSONEncoder), status_code, media_type=JSON_TYPE)


def _refusal(error: grpc.RpcError) -> Response:
    """What the coordinator said, for the page to show (it keeps polling)."""
    code = error.code() if isinstance(error, grpc.Call) else None
    details = error.details() if isinstance(error, grpc.Call) else str(error)
    return _json({"error": f"{code.name if code else 'RPC failed'}: {details}"}, BAD_GATEWAY)


def _fixed(body: str, media_type: str) -> Callable[[Request], Response]:
    """An endpoint that answers `body`, read once when the application is built."""

    def answer(request: Request) -> Response:
        return Response(body, media_type=media_type)

    return answer


def silo_state(silo: SiloView) -> str:
    """How the page names a silo's state: evicted, declined, connected or disconnected."""
    if silo.evicted:
        return "evicted"
    if silo.declined_reason is not None:
        return "declined"
    return "connected" if silo.connected else "disconnected"


def dashboard_app(source: DashboardSource, token: str, refresh_seconds: float) -> Starlette:
    """The application: its routes all GET, behind the token check."""
    page = Template(_page_file("page.html")).substitute(
        token=token, refresh_ms=round(refresh_seconds * MILLISECONDS)
    )
    assets = {
        "/": (page, HTML_TYPE),
        "/page.js": (_page_file("page.js"), SCRIPT_TYPE),
        "/page.css": (_page_file("page.css"), STYLE_TYPE),
        "/plotly.min.js": (get_plotlyjs(), SCRIPT_TYPE),
    }

    def runs(request: Request) -> Response:
        try:
            return _json({"runs": [{**asdict(run), "ended": run.state.ended} for run in source.runs()]})
        except grpc.RpcError as error:
            return _refusal(error)

    def run(request: Request) -> Response:
        try:
            detail = source.run(request.query_params.get(RUN_PARAMETER, ""))
        except grpc.RpcError as error:
            return _refusal(error)
        status = asdict(detail.status)
        for document, silo in zip(status["silos"], detail.status.silos, strict=True):
            document["state"] = silo_state(silo)
        figures = {name: figure.to_plotly_json() for name, figure in run_figures(detail.history).items()}
        return _json({"status": status, "figures": figures})

    routes = [Route(path, _fixed(body, kind), methods=["GET"]) for path, (body, kind) in assets.items()]
    routes += [Route("/api/runs", runs, methods=["GET"]), Route("/api/run", run, methods=["GET"])]
    return Starlette(routes=routes, middleware=[Middleware(TokenCheck, token=token)])
