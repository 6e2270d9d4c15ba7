"""Time to draw one DP-SGD step's Gaussian noise for a 7B-shape adapter from the project's noise sources.

The adapter is LoRA rank 16 on q, k, v and o of 32 layers of width 4096: 128 adapted matrices, each with
A (16 x 4096) and B (4096 x 16), 16,777,216 values in all. A step noises every released factor: all of
them under joint clipping, one factor per layer (half) when only the selected factors are released. The
noise is drawn as the optimizer draws it, one call per parameter tensor, in float32 on the CPU.
Beside it, the random bits alone (as many bytes as the secure source uses for the same step, without
the Box-Muller transform and the sums): from the OS, as the secure source first read them, and from a
ChaCha20 keystream keyed by the OS (`cryptography`), as it reads them now.
Every figure is the median of `--repeats` draws; the machine's load average is recorded beside it.

    python -m bench.noise_cost --repeats 3 --out bench/results/noise_cost.json
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from aslora_core.privacy.noise import CHUNK_OUTPUTS, SECURE_DRAWS, NoiseSource, SecureNoise, SeededNoise

DEFAULT_REPEATS = 3
SEED = 0
NOISE_STD = 1.0
LAYERS = 32
PROJECTIONS = 4
"""q, k, v and o."""
WIDTH = 4096
RANK = 16
CPU = torch.device("cpu")
BYTES_PER_UNIFORM = 8
OS_BYTES_ONLY = "OS bytes alone"
KEYSTREAM_BYTES_ONLY = "ChaCha20 bytes alone"
KEY_BYTES = 32
NONCE_BYTES = 16
"""The `cryptography` ChaCha20 nonce: a 64-bit counter and a 64-bit nonce."""


@dataclass(frozen=True)
class Released:
    """Which factors one step noises: a name and the shapes of its parameter tensors."""

    name: str
    shapes: tuple[tuple[int, int], ...]

    @property
    def values(self) -> int:
        """How many noise values one step draws."""
        return sum(rows * columns for rows, columns in self.shapes)


MATRICES = LAYERS * PROJECTIONS
RELEASES = (
    Released("both factors (joint clipping)", ((RANK, WIDTH), (WIDTH, RANK)) * MATRICES),
    Released("one factor per layer", ((WIDTH, RANK),) * MATRICES),
)


def _sources() -> dict[str, NoiseSource]:
    return {"secure (keystream)": SecureNoise(), "seeded (tests only)": SeededNoise(SEED)}


def time_step(source: NoiseSource, released: Released, repeats: int) -> float:
    """Median seconds to draw one step's noise, one call per parameter tensor."""
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        for shape in released.shapes:
            source.normal(shape, NOISE_STD, torch.float32, CPU)
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def time_os_bytes(released: Released, repeats: int) -> float:
    """Median seconds to read from the OS as many random bytes as the secure source uses for one step."""
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        for shape in released.shapes:
            count = shape[0] * shape[1]
            for start in range(0, count, CHUNK_OUTPUTS):
                os.urandom(BYTES_PER_UNIFORM * SECURE_DRAWS * (min(start + CHUNK_OUTPUTS, count) - start))
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def time_keystream_bytes(released: Released, repeats: int) -> float:
    """Median seconds to draw the same bytes as `time_os_bytes` from a ChaCha20 keystream keyed by the OS."""
    cipher = Cipher(algorithms.ChaCha20(os.urandom(KEY_BYTES), os.urandom(NONCE_BYTES)), mode=None)
    keystream = cipher.encryptor()
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        for shape in released.shapes:
            count = shape[0] * shape[1]
            for start in range(0, count, CHUNK_OUTPUTS):
                size = BYTES_PER_UNIFORM * SECURE_DRAWS * (min(start + CHUNK_OUTPUTS, count) - start)
                keystream.update(bytes(size))
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def main() -> None:
    """Time every source on every release; print a table, write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS)
    parser.add_argument("--out", type=Path)
    arguments = parser.parse_args()
    load_before = os.getloadavg()
    rows: list[dict[str, float | int | str]] = []
    print(f"{'source':<22} {'released':<32} {'values':>11} {'seconds':>8} {'ns/value':>9}")
    timers: dict[str, Callable[[Released, int], float]] = {
        name: functools.partial(time_step, source) for name, source in _sources().items()
    }
    timers[OS_BYTES_ONLY] = time_os_bytes
    timers[KEYSTREAM_BYTES_ONLY] = time_keystream_bytes
    for source_name, timer in timers.items():
        for released in RELEASES:
            seconds = timer(released, arguments.repeats)
            per_value = seconds / released.values * 1e9
            rows.append(
                {
                    "source": source_name,
                    "released": released.name,
                    "values": released.values,
                    "seconds": seconds,
                    "ns_per_value": per_value,
                }
            )
            print(
                f"{source_name:<22} {released.name:<32} {released.values:>11,} {seconds:>8.3f} "
                f"{per_value:>9.1f}",
                flush=True,
            )
    document = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
            "torch": torch.__version__,
        },
        "adapter": {"layers": LAYERS, "projections": PROJECTIONS, "width": WIDTH, "rank": RANK},
        "repeats": arguments.repeats,
        "rows": rows,
    }
    if arguments.out is not None:
        arguments.out.parent.mkdir(parents=True, exist_ok=True)
        arguments.out.write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()
