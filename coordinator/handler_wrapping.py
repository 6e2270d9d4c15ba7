"""Rebuild a gRPC method handler with its behavior wrapped, whatever its streaming kind (for interceptors)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc

Behavior = Callable[[Any, grpc.ServicerContext], Any]
"""A handler behavior that returns one response (unary-unary, stream-unary)."""
StreamingBehavior = Callable[[Any, grpc.ServicerContext], Iterator[Any]]
"""A handler behavior that yields responses (unary-stream, stream-stream)."""


def wrap_handler(
    handler: grpc.RpcMethodHandler[Any, Any],
    wrap_single: Callable[[Behavior], Behavior],
    wrap_streaming: Callable[[StreamingBehavior], StreamingBehavior],
) -> grpc.RpcMethodHandler[Any, Any]:
    """The same handler (same codec), its behavior passed through the wrapper that fits its kind."""
    codec = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(wrap_single(handler.unary_unary), **codec)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(wrap_streaming(handler.unary_stream), **codec)
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(wrap_single(handler.stream_unary), **codec)
    if handler.stream_stream is not None:
        return grpc.stream_stream_rpc_method_handler(wrap_streaming(handler.stream_stream), **codec)
    return handler
