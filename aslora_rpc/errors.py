"""How a gRPC error carries the coordinator's internal error code to clients (trailing metadata)."""

from __future__ import annotations

import grpc

from aslora_rpc.error_codes import ErrorCode

ERROR_CODE_KEY = "aslora-error-code"
"""Trailing-metadata key whose value names the error precisely (e.g. `round_closed`)."""


def error_code_of(error: grpc.RpcError) -> ErrorCode | None:
    """The error code a failed call carried; None when it carried none, or one this side does not know."""
    trailing: tuple[tuple[str, str | bytes], ...] = ()
    if isinstance(error, grpc.Call):
        trailing = tuple(error.trailing_metadata() or ())
    for key, value in trailing:
        if key == ERROR_CODE_KEY:
            try:
                return ErrorCode(value if isinstance(value, str) else value.decode("utf-8"))
            except ValueError:
                return None
    return None
