"""The coordinator and the silos share one error vocabulary: a refusal's code reaches the client as a member
of it (a code this side does not know reads as none), and the coordinator's catalog maps every member."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent import futures

import grpc
import pytest

from aslora_coordinator.errors import CATALOG
from aslora_rpc.error_codes import ErrorCode
from aslora_rpc.errors import ERROR_CODE_KEY, error_code_of
from aslora_silo.agent import LATE_CODES

SERVICE, METHOD = "test.Refuser", "Refuse"
NO_CODE = b""
"""A request for a refusal without an error code."""
CALL_TIMEOUT_SECONDS = 10.0

Refuse = Callable[[bytes], bytes]


def _refuse(request: bytes, context: grpc.ServicerContext) -> bytes:
    """Refuse every call, carrying the request's bytes as the error code (none when empty)."""
    if request != NO_CODE:
        context.set_trailing_metadata(((ERROR_CODE_KEY, request.decode("utf-8")),))
    context.abort(grpc.StatusCode.FAILED_PRECONDITION, "refused")


@pytest.fixture(scope="module")
def refuse() -> Iterator[Refuse]:
    """A call to a loopback server that refuses with the error code it is sent."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    handler: grpc.RpcMethodHandler[bytes, bytes] = grpc.unary_unary_rpc_method_handler(_refuse)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {METHOD: handler}),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(f"/{SERVICE}/{METHOD}")
    yield lambda request: call(request, timeout=CALL_TIMEOUT_SECONDS)
    channel.close()
    server.stop(grace=None)


def _code(refuse: Refuse, sent: bytes) -> ErrorCode | None:
    with pytest.raises(grpc.RpcError) as excinfo:
        refuse(sent)
    return error_code_of(excinfo.value)


def test_a_known_code_arrives_as_its_member(refuse: Refuse) -> None:
    for code in ErrorCode:
        assert _code(refuse, code.value.encode("utf-8")) is code


def test_an_unknown_or_missing_code_reads_as_none(refuse: Refuse) -> None:
    assert _code(refuse, b"from_a_newer_coordinator") is None
    assert _code(refuse, NO_CODE) is None


def test_the_catalog_maps_every_code_and_the_silo_acts_on_members() -> None:
    assert set(CATALOG) == set(ErrorCode)
    assert all(isinstance(code, ErrorCode) for code in LATE_CODES)
