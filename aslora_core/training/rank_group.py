"""Forming the torch.distributed process group of training ranks on one node: the lead rank serves a TCP
store on a free loopback port, the others join it; gloo for ranks on the CPU, NCCL for ranks on GPUs."""

from __future__ import annotations

import datetime

import torch.distributed as dist

# torch.distributed re-exports the store without declaring it, which the type checker does not follow.
from torch._C._distributed_c10d import TCPStore

from aslora_core.training.ranks import LEAD_RANK

LOOPBACK = "127.0.0.1"
FREE_PORT = 0
"""Asks the operating system for a free port."""


def backend_for(device_type: str) -> str:
    """The collective backend of ranks on `device_type`: NCCL between GPUs, gloo on the CPU."""
    return "nccl" if device_type == "cuda" else "gloo"


def serve_store(world_size: int, timeout_seconds: float) -> TCPStore:
    """The lead rank's store on a free loopback port (`.port`), not waiting for the others yet."""
    return TCPStore(
        LOOPBACK,
        FREE_PORT,
        world_size,
        is_master=True,
        wait_for_workers=False,
        timeout=datetime.timedelta(seconds=timeout_seconds),
    )


def join_group(
    rank: int,
    world_size: int,
    *,
    store: TCPStore | None = None,
    port: int = FREE_PORT,
    backend: str = "gloo",
    timeout_seconds: float,
) -> None:
    """Join the default process group as `rank` of `world_size`: the lead rank through the `store` it
    serves, the others through the lead's store at loopback `port`; every collective of the group then
    fails after `timeout_seconds` without an answer."""
    timeout = datetime.timedelta(seconds=timeout_seconds)
    if store is None:
        if rank == LEAD_RANK:
            raise ValueError("the lead rank joins through the store it serves")
        store = TCPStore(LOOPBACK, port, world_size, is_master=False, timeout=timeout)
    dist.init_process_group(backend, store=store, rank=rank, world_size=world_size, timeout=timeout)


def leave_group() -> None:
    """Leave the default process group, if this process is in one."""
    if dist.is_initialized():
        dist.destroy_process_group()
