"""The one error catalog: the gRPC status each error code (`aslora_rpc.error_codes`) maps to, and its public
message."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from aslora_rpc.error_codes import ErrorCode


@dataclass(frozen=True)
class CatalogEntry:
    """How one error code appears to clients."""

    status: grpc.StatusCode
    message: str


CATALOG: dict[ErrorCode, CatalogEntry] = {
    ErrorCode.PROTOCOL_MISMATCH: CatalogEntry(
        grpc.StatusCode.FAILED_PRECONDITION, "incompatible protocol version"
    ),
    ErrorCode.FINGERPRINT_MISMATCH: CatalogEntry(
        grpc.StatusCode.FAILED_PRECONDITION,
        "base model fingerprint differs from the coordinator's: a different model or tokenizer is loaded",
    ),
    ErrorCode.INVALID_REGISTRATION: CatalogEntry(grpc.StatusCode.INVALID_ARGUMENT, "invalid registration"),
    ErrorCode.SILO_EVICTED: CatalogEntry(
        grpc.StatusCode.FAILED_PRECONDITION, "an operator evicted this silo from the run"
    ),
    ErrorCode.UNKNOWN_SILO: CatalogEntry(grpc.StatusCode.NOT_FOUND, "silo is not registered; register again"),
    ErrorCode.UNKNOWN_TASK: CatalogEntry(grpc.StatusCode.NOT_FOUND, "no such task"),
    ErrorCode.ROUND_CLOSED: CatalogEntry(
        grpc.StatusCode.FAILED_PRECONDITION, "the round is closed: late update rejected"
    ),
    ErrorCode.NOT_ASSIGNED: CatalogEntry(grpc.StatusCode.PERMISSION_DENIED, "the task is not this silo's"),
    ErrorCode.NOT_HANDED_OUT: CatalogEntry(
        grpc.StatusCode.FAILED_PRECONDITION, "the task was not handed to this silo yet: wait for it"
    ),
    ErrorCode.DUPLICATE_UPDATE: CatalogEntry(
        grpc.StatusCode.ALREADY_EXISTS, "this silo already sent its update for the round"
    ),
    ErrorCode.MALFORMED_MESSAGE: CatalogEntry(grpc.StatusCode.INVALID_ARGUMENT, "malformed message"),
    ErrorCode.PAYLOAD_TOO_LARGE: CatalogEntry(grpc.StatusCode.RESOURCE_EXHAUSTED, "payload too large"),
    ErrorCode.PAYLOAD_CORRUPT: CatalogEntry(
        grpc.StatusCode.DATA_LOSS, "payload size or checksum does not match its announcement"
    ),
    ErrorCode.INVALID_UPDATE: CatalogEntry(
        grpc.StatusCode.INVALID_ARGUMENT, "update does not match the task (tensors, shapes or values)"
    ),
    ErrorCode.RUN_ENDED: CatalogEntry(grpc.StatusCode.FAILED_PRECONDITION, "the run has ended"),
    ErrorCode.RUN_CHANGED: CatalogEntry(
        grpc.StatusCode.FAILED_PRECONDITION,
        "that run is not the one being served: fetch the current run's plan and check it again",
    ),
    ErrorCode.UNKNOWN_RUN: CatalogEntry(grpc.StatusCode.NOT_FOUND, "no run of that id was submitted"),
    ErrorCode.NO_ACTIVE_RUN: CatalogEntry(
        grpc.StatusCode.FAILED_PRECONDITION, "no run is active: submit one, or name a run"
    ),
    ErrorCode.INVALID_RUN: CatalogEntry(grpc.StatusCode.INVALID_ARGUMENT, "the run's settings are not valid"),
    ErrorCode.UNAUTHENTICATED: CatalogEntry(
        grpc.StatusCode.UNAUTHENTICATED, "no usable client certificate of this federation"
    ),
    ErrorCode.CERTIFICATE_REVOKED: CatalogEntry(
        grpc.StatusCode.UNAUTHENTICATED, "the client certificate has been revoked"
    ),
    ErrorCode.WRONG_ROLE: CatalogEntry(
        grpc.StatusCode.PERMISSION_DENIED, "this certificate's role may not call this service"
    ),
    ErrorCode.IDENTITY_MISMATCH: CatalogEntry(
        grpc.StatusCode.PERMISSION_DENIED, "a silo may act only under its own certificate's name"
    ),
    ErrorCode.SILO_NOT_ALLOWED: CatalogEntry(
        grpc.StatusCode.PERMISSION_DENIED, "this silo is not on the coordinator's list of allowed silos"
    ),
    ErrorCode.UPDATE_TOO_LARGE: CatalogEntry(
        grpc.StatusCode.INVALID_ARGUMENT, "update norm exceeds the bound relative to the global adapter"
    ),
    ErrorCode.INTERNAL: CatalogEntry(grpc.StatusCode.INTERNAL, "internal error; see the coordinator's log"),
}


class FederationError(Exception):
    """A request the coordinator refuses: a catalog code and a detail safe to show the caller."""

    def __init__(self, code: ErrorCode, detail: str = "") -> None:
        super().__init__(f"{code.value}: {detail}" if detail else code.value)
        self.code = code
        self.detail = detail

    @property
    def public_message(self) -> str:
        """The catalog message, followed by the detail."""
        message = CATALOG[self.code].message
        return f"{message}: {self.detail}" if self.detail else message
