"""What counts as a training device at a silo, and how many this node has: a GPU when the silo computes
on `cuda`; on the CPU, a gloo rank, at most one per core this process may run on."""

from __future__ import annotations

import os

from aslora_core.mistakes import FixableError

CUDA = "cuda"
INDEXED = ":"
"""Separates a device type from a device index, as in `cuda:1`."""


class DevicesUnavailableError(FixableError):
    """The silo asks for more training devices than its node has, or names one GPU and asks for several."""

    fix = "lower [training] devices (or --devices) to what the node has, or run the silo on a larger node"


def cpu_cores() -> int:
    """The CPU cores this process may run on (its affinity where the system tells it)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def available_devices(device: str) -> int:
    """How many training ranks the node can give the silo's `device` type: its GPUs for `cuda`, its CPU
    cores otherwise."""
    if device.split(INDEXED, maxsplit=1)[0] == CUDA:
        import torch  # here, not at import: `aslora silo --help` never loads torch

        return int(torch.cuda.device_count())
    return cpu_cores()


def rank_device(device: str, rank: int) -> str:
    """The device of training rank `rank`: GPU number `rank` under `cuda`, the CPU otherwise."""
    return f"{CUDA}{INDEXED}{rank}" if device == CUDA else device


def check_devices(device: str, devices: int) -> None:
    """Refuse, naming what the node has, a silo asking for more devices than it has; several ranks need
    `cuda` without an index (rank r takes GPU r) or the CPU."""
    if devices == 1:
        return
    if INDEXED in device:
        raise DevicesUnavailableError(
            f'[training] device = "{device}" names one GPU, but devices = {devices} asks for several: rank '
            f'r of a silo on several GPUs takes GPU r, so write device = "{CUDA}"'
        )
    available = available_devices(device)
    if devices > available:
        kind = "GPU(s) visible to CUDA" if device == CUDA else "CPU core(s) for gloo ranks"
        raise DevicesUnavailableError(
            f'[training] devices = {devices}, but this node has {available} {kind} on device "{device}"'
        )
