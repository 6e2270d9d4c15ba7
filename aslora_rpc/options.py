"""gRPC channel and server options shared by both ends: message size caps and keepalive."""

from __future__ import annotations

MIB = 1 << 20
DEFAULT_CHUNK_BYTES = MIB
"""Payloads travel in chunks of this size unless configured otherwise (DESIGN 4)."""
MAX_CHUNK_BYTES = 16 * MIB
MAX_MESSAGE_BYTES = MAX_CHUNK_BYTES + MIB
"""One chunk plus room for the fields around it; whole payloads never travel in one message."""
KEEPALIVE_TIME_MS = 30_000
KEEPALIVE_TIMEOUT_MS = 10_000
MIN_PING_INTERVAL_MS = 10_000
"""Servers accept client pings this often, a little more often than clients send them."""
RECONNECT_BACKOFF_INITIAL_MS = 250
RECONNECT_BACKOFF_MAX_MS = 1_000
"""A channel whose server went away tries to reconnect at most this far apart (gRPC's default is two
minutes): silos find a restarted coordinator within about a second. One connection attempt per silo per
second is no load; the silo's own retry backoff adds jitter on top."""

GrpcOptions = list[tuple[str, int | str]]


def channel_options(server_name: str | None = None) -> GrpcOptions:
    """Options of a client channel; `server_name` overrides the name checked in the server's certificate."""
    options: GrpcOptions = [
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
        ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.initial_reconnect_backoff_ms", RECONNECT_BACKOFF_INITIAL_MS),
        ("grpc.min_reconnect_backoff_ms", RECONNECT_BACKOFF_INITIAL_MS),
        ("grpc.max_reconnect_backoff_ms", RECONNECT_BACKOFF_MAX_MS),
    ]
    if server_name:
        options.append(("grpc.ssl_target_name_override", server_name))
    return options


def server_options() -> GrpcOptions:
    """Options of a server: the same size caps, and tolerance for the clients' keepalive pings."""
    return [
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
        ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", MIN_PING_INTERVAL_MS),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.so_reuseport", 0),
    ]
