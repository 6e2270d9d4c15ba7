"""The dashboard is read-only by construction: its application answers GET alone, and its data source
holds an AdminReader, which calls the admin service's queries and can call nothing else."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
from starlette.routing import Route

from aslora.v1 import admin_pb2
from aslora_cli.dashboard.app import dashboard_app
from aslora_cli.dashboard.source import DashboardSource
from aslora_coordinator.admin_client import AdminClient
from aslora_coordinator.admin_reader import ADMIN_SERVICE, QUERY_METHODS, AdminReader, _query

LOOPBACK = "127.0.0.1"
CALL_TIMEOUT_SECONDS = 5.0
SERVER_WORKERS = 2


class _MethodRecorder(grpc.ServerInterceptor):
    """Notes the full name of every method called on the server it is part of."""

    def __init__(self) -> None:
        self.called: list[str] = []

    def intercept_service(
        self, continuation: Callable[[Any], Any], handler_call_details: grpc.HandlerCallDetails
    ) -> Any:
        self.called.append(handler_call_details.method)
        return continuation(handler_call_details)


@pytest.fixture
def recorded() -> Iterator[tuple[grpc.Channel, _MethodRecorder]]:
    """A channel to a real loopback gRPC server that serves nothing (every call: UNIMPLEMENTED) and
    records what it was asked."""
    recorder = _MethodRecorder()
    server = grpc.server(futures.ThreadPoolExecutor(SERVER_WORKERS), interceptors=[recorder])
    port = server.add_insecure_port(f"{LOOPBACK}:0")
    server.start()
    channel = grpc.insecure_channel(f"{LOOPBACK}:{port}")
    try:
        yield channel, recorder
    finally:
        channel.close()
        server.stop(None)


def _public_methods(target: object) -> list[Callable[[], object]]:
    return [
        getattr(target, name)
        for name, _ in inspect.getmembers(type(target), inspect.isfunction)
        if not name.startswith("_")
    ]


def test_every_route_of_the_application_answers_get_only(
    recorded: tuple[grpc.Channel, _MethodRecorder],
) -> None:
    channel, _ = recorded
    application = dashboard_app(DashboardSource(AdminReader(channel)), "token", 1.0)
    routes = application.routes
    assert routes and all(isinstance(route, Route) for route in routes)
    assert {route.path: route.methods for route in routes if isinstance(route, Route)} == {
        path: {"GET", "HEAD"}
        for path in ("/", "/page.js", "/page.css", "/plotly.min.js", "/api/runs", "/api/run")
    }


def test_the_reader_calls_the_admin_queries_and_nothing_else(
    recorded: tuple[grpc.Channel, _MethodRecorder],
) -> None:
    channel, recorder = recorded
    reader = AdminReader(channel, CALL_TIMEOUT_SECONDS)
    for method in _public_methods(reader):
        with pytest.raises(grpc.RpcError) as raised:
            method()
        assert isinstance(raised.value, grpc.Call) and raised.value.code() is grpc.StatusCode.UNIMPLEMENTED
    assert sorted(recorder.called) == sorted(f"/{ADMIN_SERVICE}/{name}" for name in QUERY_METHODS)


def test_the_queries_are_admin_methods_and_no_other_method_can_be_bound(
    recorded: tuple[grpc.Channel, _MethodRecorder],
) -> None:
    channel, _ = recorded
    service = admin_pb2.DESCRIPTOR.services_by_name["Admin"]
    assert set(service.methods_by_name) > QUERY_METHODS
    for name in set(service.methods_by_name) - QUERY_METHODS:
        with pytest.raises(ValueError, match="not one of the admin service's queries"):
            _query(channel, name, admin_pb2.ShutdownRequest, admin_pb2.ControlResponse)


def test_the_data_source_holds_a_reader_and_reaches_only_its_queries(
    recorded: tuple[grpc.Channel, _MethodRecorder],
) -> None:
    channel, recorder = recorded
    source = DashboardSource(AdminReader(channel, CALL_TIMEOUT_SECONDS))
    held = list(vars(source).values())
    assert [type(value) for value in held] == [AdminReader], "no AdminClient, no stub, nothing else"
    assert not any(isinstance(value, AdminClient) for value in held)
    assert sorted(method.__name__ for method in _public_methods(source)) == ["run", "runs"]
    for call in (source.runs, lambda: source.run("some-run")):
        with pytest.raises(grpc.RpcError):
            call()
    assert recorder.called and {name.rsplit("/", 1)[1] for name in recorder.called} <= QUERY_METHODS
