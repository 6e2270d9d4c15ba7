"""Gaussian noise for DP-SGD: from the OS CSPRNG (default) or a seeded generator (tests only)."""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import os
from abc import ABC, abstractmethod

import numpy as np
import numpy.typing as npt
import torch

_LOG = logging.getLogger(__name__)

MANTISSA_BITS = 53
"""Random bits per uniform: all a float64 mantissa holds, so each uniform is an exact dyadic rational."""
_WORD_BITS = 64
_BYTES_PER_WORD = _WORD_BITS // 8
_MANTISSA_SPAN = float(2**MANTISSA_BITS)
SECURE_DRAWS = 4
"""Normals summed per output (then divided by their square root), Opacus' defence against
floating-point attacks on the Gaussian mechanism (2n draws with n = 2)."""
CHUNK_OUTPUTS = 1 << 18
"""Outputs produced per batch of OS randomness, which bounds temporary memory."""
SEED_BITS = 63


class NoiseSource(ABC):
    """Where DP-SGD gets its Gaussian noise."""

    @property
    @abstractmethod
    def secure(self) -> bool:
        """Whether the noise is fit for a real privacy guarantee."""

    @abstractmethod
    def normal(
        self, shape: torch.Size | tuple[int, ...], std: float, dtype: torch.dtype, device: torch.device
    ) -> torch.Tensor:
        """A tensor of independent N(0, std^2) samples."""


def _check_request(std: float, dtype: torch.dtype) -> None:
    if not (math.isfinite(std) and std >= 0.0):
        raise ValueError(f"noise std must be finite and non-negative, got {std}")
    if not dtype.is_floating_point:
        raise ValueError(f"noise needs a floating-point dtype, got {dtype}")


def _os_standard_normals(count: int) -> npt.NDArray[np.float64]:
    """`count` (even) standard normals by Box-Muller from OS CSPRNG bytes."""
    words = np.frombuffer(os.urandom(_BYTES_PER_WORD * count), dtype=np.uint64)
    mantissas = (words >> np.uint64(_WORD_BITS - MANTISSA_BITS)).astype(np.float64)
    half = count // 2
    # The radius uniform lies in (0, 1] so its logarithm is finite; the angle uniform in [0, 1).
    radius_uniform = (_MANTISSA_SPAN - mantissas[:half]) / _MANTISSA_SPAN
    angle = (2.0 * math.pi / _MANTISSA_SPAN) * mantissas[half:]
    radius = np.sqrt(-2.0 * np.log(radius_uniform))
    return np.concatenate((radius * np.cos(angle), radius * np.sin(angle)))


class SecureNoise(NoiseSource):
    """Gaussian noise from the operating system's CSPRNG, hardened against floating-point attacks."""

    @property
    def secure(self) -> bool:
        """Always True."""
        return True

    def normal(
        self, shape: torch.Size | tuple[int, ...], std: float, dtype: torch.dtype, device: torch.device
    ) -> torch.Tensor:
        """N(0, std^2) samples, computed in float64 and cast to `dtype` on `device`."""
        _check_request(std, dtype)
        size = torch.Size(shape)
        count = size.numel()
        if std == 0.0 or count == 0:
            return torch.zeros(size, dtype=dtype, device=device)
        out = np.empty(count, dtype=np.float64)
        for start in range(0, count, CHUNK_OUTPUTS):
            stop = min(start + CHUNK_OUTPUTS, count)
            draws = std * _os_standard_normals(SECURE_DRAWS * (stop - start))
            out[start:stop] = draws.reshape(SECURE_DRAWS, stop - start).sum(axis=0) / math.sqrt(SECURE_DRAWS)
        return torch.from_numpy(out).reshape(size).to(dtype=dtype, device=device)


@functools.cache
def _warn_seeded_once() -> None:
    """Say loudly, once per process, that noise is not secure (every silo and round makes a source)."""
    _LOG.warning(
        "DP noise is seeded and NOT cryptographically secure: the privacy guarantee does not hold; "
        "use this only for tests and reproducible benchmarks"
    )


class SeededNoise(NoiseSource):
    """Deterministic Gaussian noise from a private seeded generator; NOT secure (tests, benchmarks)."""

    def __init__(self, seed: int) -> None:
        """Seed a private CPU generator (results do not depend on the target device)."""
        self._generator = torch.Generator(device="cpu")
        self._generator.manual_seed(seed)
        _warn_seeded_once()

    @property
    def secure(self) -> bool:
        """Always False."""
        return False

    def normal(
        self, shape: torch.Size | tuple[int, ...], std: float, dtype: torch.dtype, device: torch.device
    ) -> torch.Tensor:
        """N(0, std^2) samples from the seeded generator, computed in float64 and cast."""
        _check_request(std, dtype)
        size = torch.Size(shape)
        if std == 0.0:
            return torch.zeros(size, dtype=dtype, device=device)
        draws = torch.normal(0.0, std, size, generator=self._generator, dtype=torch.float64)
        return draws.to(dtype=dtype, device=device)


def make_noise_source(secure: bool, seed: int) -> NoiseSource:
    """SecureNoise when `secure` (the seed is then unused), else SeededNoise(seed)."""
    return SecureNoise() if secure else SeededNoise(seed)


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed determined by `parts` (e.g. base seed, silo id, round), via SHA-256."""
    if not parts:
        raise ValueError("derive_seed needs at least one part")
    digest = hashlib.sha256()
    for part in parts:
        # Tagged and length-prefixed, so ("1", 2) and (1, "2") or ("a", "bc") and ("ab", "c") differ.
        tag, text = (b"s", part) if isinstance(part, str) else (b"i", str(int(part)))
        encoded = text.encode("utf-8")
        digest.update(tag + len(encoded).to_bytes(_BYTES_PER_WORD, "big") + encoded)
    return int.from_bytes(digest.digest()[:_BYTES_PER_WORD], "big") >> (_WORD_BITS - SEED_BITS)
