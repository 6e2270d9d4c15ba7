"""The admin service's queries, and nothing else: a client that holds no callable of a method that
changes the federation (the read-only dashboard talks to the coordinator through it alone)."""

from __future__ import annotations

from typing import TypeVar

import grpc
from google.protobuf.message import Message

from aslora.v1 import admin_pb2 as pb
from aslora_coordinator.admin_wire import (
    history_from_proto,
    ledger_from_proto,
    run_from_proto,
    silo_from_proto,
    status_from_proto,
)
from aslora_coordinator.views import LedgerView, RunHistoryView, RunView, SiloView, StatusView

DEFAULT_TIMEOUT_SECONDS = 30.0
ADMIN_SERVICE = pb.DESCRIPTOR.services_by_name["Admin"].full_name
QUERY_METHODS = frozenset({"ListRuns", "GetStatus", "ListSilos", "GetPrivacyLedger", "GetRunHistory"})
"""The admin service's unary methods that only read (its two streams, of events and of the adapter, read
too, but the reader has no use for them); the others (submit, cancel, pause, evict, shutdown...) act."""
Request = TypeVar("Request", bound=Message)
Response = TypeVar("Response", bound=Message)


def _query(
    channel: grpc.Channel, method: str, request: type[Request], response: type[Response]
) -> grpc.UnaryUnaryMultiCallable[Request, Response]:
    """The callable of one query method (refused for any other method)."""
    if method not in QUERY_METHODS:
        raise ValueError(f"{method} is not one of the admin service's queries")
    return channel.unary_unary(
        f"/{ADMIN_SERVICE}/{method}",
        request_serializer=request.SerializeToString,
        response_deserializer=response.FromString,
    )


class AdminReader:
    """Calls the admin service's queries over an open channel."""

    def __init__(self, channel: grpc.Channel, timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        self._timeout = timeout_seconds
        self._list_runs = _query(channel, "ListRuns", pb.ListRunsRequest, pb.ListRunsResponse)
        self._get_status = _query(channel, "GetStatus", pb.GetStatusRequest, pb.GetStatusResponse)
        self._list_silos = _query(channel, "ListSilos", pb.ListSilosRequest, pb.ListSilosResponse)
        self._get_ledger = _query(
            channel, "GetPrivacyLedger", pb.GetPrivacyLedgerRequest, pb.GetPrivacyLedgerResponse
        )
        self._get_history = _query(
            channel, "GetRunHistory", pb.GetRunHistoryRequest, pb.GetRunHistoryResponse
        )

    def runs(self) -> list[RunView]:
        """Every submitted run, in submission order."""
        response = self._list_runs(pb.ListRunsRequest(), timeout=self._timeout)
        return [run_from_proto(run) for run in response.runs]

    def status(self, run_id: str = "") -> StatusView:
        """A run at a glance (default: the active or latest run)."""
        return status_from_proto(self._get_status(pb.GetStatusRequest(run_id=run_id), timeout=self._timeout))

    def silos(self, run_id: str = "") -> list[SiloView]:
        """Every silo of a run."""
        response = self._list_silos(pb.ListSilosRequest(run_id=run_id), timeout=self._timeout)
        return [silo_from_proto(silo) for silo in response.silos]

    def ledger(self, run_id: str = "") -> LedgerView:
        """A run's privacy ledger."""
        request = pb.GetPrivacyLedgerRequest(run_id=run_id)
        return ledger_from_proto(self._get_ledger(request, timeout=self._timeout))

    def history(self, run_id: str = "") -> RunHistoryView:
        """A run's figures round by round (default: the active or latest run)."""
        request = pb.GetRunHistoryRequest(run_id=run_id)
        return history_from_proto(self._get_history(request, timeout=self._timeout))
