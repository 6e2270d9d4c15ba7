"""The error codes the coordinator sends with a refusal and the silos act on: one vocabulary for both."""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    """What went wrong, precisely: the coordinator sends it in trailing metadata (`aslora_rpc.errors`)."""

    PROTOCOL_MISMATCH = "protocol_mismatch"
    FINGERPRINT_MISMATCH = "fingerprint_mismatch"
    INVALID_REGISTRATION = "invalid_registration"
    SILO_EVICTED = "silo_evicted"
    UNKNOWN_SILO = "unknown_silo"
    UNKNOWN_TASK = "unknown_task"
    ROUND_CLOSED = "round_closed"
    NOT_ASSIGNED = "not_assigned"
    NOT_HANDED_OUT = "not_handed_out"
    DUPLICATE_UPDATE = "duplicate_update"
    MALFORMED_MESSAGE = "malformed_message"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    PAYLOAD_CORRUPT = "payload_corrupt"
    INVALID_UPDATE = "invalid_update"
    RUN_ENDED = "run_ended"
    RUN_CHANGED = "run_changed"
    UNKNOWN_RUN = "unknown_run"
    NO_ACTIVE_RUN = "no_active_run"
    INVALID_RUN = "invalid_run"
    UNAUTHENTICATED = "unauthenticated"
    CERTIFICATE_REVOKED = "certificate_revoked"
    WRONG_ROLE = "wrong_role"
    IDENTITY_MISMATCH = "identity_mismatch"
    SILO_NOT_ALLOWED = "silo_not_allowed"
    UPDATE_TOO_LARGE = "update_too_large"
    INTERNAL = "internal"
