"""One interceptor maps every error a handler raises to a gRPC status through the error catalog."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

import grpc

from aslora_coordinator.errors import CATALOG, FederationError
from aslora_coordinator.handler_wrapping import Behavior, StreamingBehavior, wrap_handler
from aslora_rpc.enum_wire import WireError
from aslora_rpc.error_codes import ErrorCode
from aslora_rpc.errors import ERROR_CODE_KEY
from aslora_rpc.transfer import TransferError, TransferFault

LOGGER = logging.getLogger(__name__)
_TRANSFER_CODES = {
    TransferFault.TOO_LARGE: ErrorCode.PAYLOAD_TOO_LARGE,
    TransferFault.SIZE_MISMATCH: ErrorCode.PAYLOAD_CORRUPT,
    TransferFault.CHECKSUM_MISMATCH: ErrorCode.PAYLOAD_CORRUPT,
    TransferFault.MALFORMED: ErrorCode.MALFORMED_MESSAGE,
}


def as_federation_error(error: Exception) -> FederationError:
    """The catalog error for anything a handler may raise; unexpected errors become INTERNAL."""
    if isinstance(error, FederationError):
        return error
    if isinstance(error, TransferError):
        return FederationError(_TRANSFER_CODES[error.fault], str(error))
    if isinstance(error, WireError):
        return FederationError(ErrorCode.MALFORMED_MESSAGE, str(error))
    LOGGER.error("unexpected error in a handler", exc_info=error)
    return FederationError(ErrorCode.INTERNAL)


def _abort(context: grpc.ServicerContext, error: Exception) -> NoReturn:
    failure = as_federation_error(error)
    context.set_trailing_metadata(((ERROR_CODE_KEY, failure.code.value),))
    context.abort(CATALOG[failure.code].status, failure.public_message)
    raise AssertionError("grpc's abort returned")  # it raises; this keeps the NoReturn promise explicit


def _wrap_single(behavior: Behavior) -> Behavior:
    def handle(request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return behavior(request, context)
        except Exception as error:
            _abort(context, error)

    return handle


def _wrap_streaming(behavior: StreamingBehavior) -> StreamingBehavior:
    def handle(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        try:
            yield from behavior(request, context)
        except Exception as error:
            _abort(context, error)

    return handle


class ErrorCatalogInterceptor(grpc.ServerInterceptor):
    """Wraps each handler so that a FederationError (or any other error) ends the call with its status."""

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        """The same handler, with its behavior wrapped."""
        handler = continuation(handler_call_details)
        return None if handler is None else wrap_handler(handler, _wrap_single, _wrap_streaming)
