"""A port another process holds is named with its address, by the preflight probe and by the server's
own bind."""

from __future__ import annotations

import socket
from concurrent import futures

import grpc
import pytest

from aslora_rpc.endpoints import Endpoint, PortInUseError
from aslora_rpc.options import server_options
from aslora_rpc.ports import add_port, check_port_free

WORKERS = 1


def test_a_held_port_is_named_by_the_probe_and_the_bind() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = Endpoint("127.0.0.1", holder.getsockname()[1])
        with pytest.raises(PortInUseError, match=f"cannot listen on {taken}: the address is already in use"):
            check_port_free(taken)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=WORKERS), options=server_options())
        with pytest.raises(PortInUseError, match=f"cannot listen on {taken}"):
            add_port(server, taken, None)
        server.stop(None)


def test_a_free_port_and_port_zero_pass() -> None:
    check_port_free(Endpoint("127.0.0.1", 0))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = Endpoint("127.0.0.1", probe.getsockname()[1])
    check_port_free(free)
