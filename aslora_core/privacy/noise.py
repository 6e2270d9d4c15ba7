"""Gaussian noise for DP-SGD: from a ChaCha20 keystream keyed by the OS CSPRNG (default) or a seeded
generator (tests only)."""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import os
from abc import ABC, abstractmethod

import torch
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms

_LOG = logging.getLogger(__name__)

MANTISSA_BITS = 53
"""Random bits per uniform: all a float64 mantissa holds, so each uniform is an exact dyadic rational."""
_WORD_BITS = 64
_BYTES_PER_WORD = _WORD_BITS // 8
_MANTISSA_SHIFT = _WORD_BITS - MANTISSA_BITS
_MANTISSA_MASK = (1 << MANTISSA_BITS) - 1
_MANTISSA_SPAN = float(2**MANTISSA_BITS)
SECURE_DRAWS = 4
"""Normals summed per output (then divided by their square root), Opacus' defence against
floating-point attacks on the Gaussian mechanism (2n draws with n = 2)."""
CHUNK_OUTPUTS = 1 << 18
"""Outputs produced per batch of random words, which bounds temporary memory."""
SEED_BITS = 63
KEY_BYTES = 32
NONCE_BYTES = 16
COUNTER_BYTES = 8
"""The leading bytes of `cryptography`'s 16-byte ChaCha20 nonce that hold the block counter: zero, so a
keystream starts at its first block; the remaining bytes are random."""
KEYSTREAM_LIMIT_BYTES = 1 << 32
"""Bytes read from one key before a new one is drawn: far below any counter's wrap."""


class Keystream:
    """Random 64-bit words from a ChaCha20 keystream under a key drawn from the OS CSPRNG.

    A new key is drawn on first use, after KEYSTREAM_LIMIT_BYTES, and in a process other than the one
    that drew the key (a forked child never repeats its parent's words). Each `SecureNoise` owns one, and
    the trainer makes a new source every round, so no two rounds or processes share a keystream.
    """

    def __init__(self) -> None:
        self._encryptor: CipherContext | None = None
        self._owner = -1
        self._used = 0

    def words(self, count: int) -> torch.Tensor:
        """`count` keystream words as int64 (their bits; sign aside) on the CPU."""
        size = _BYTES_PER_WORD * count
        encryptor = self._encryptor
        if encryptor is None or self._owner != os.getpid() or self._used + size > KEYSTREAM_LIMIT_BYTES:
            nonce = bytes(COUNTER_BYTES) + os.urandom(NONCE_BYTES - COUNTER_BYTES)
            encryptor = Cipher(algorithms.ChaCha20(os.urandom(KEY_BYTES), nonce), mode=None).encryptor()
            self._encryptor, self._owner, self._used = encryptor, os.getpid(), 0
        self._used += size
        return torch.frombuffer(bytearray(encryptor.update(bytes(size))), dtype=torch.int64)


def standard_normals(words: torch.Tensor) -> torch.Tensor:
    """As many standard normals as `words` (int64, an even count), by Box-Muller in float64 on their
    device, from the top 53 bits of each word."""
    mantissas = ((words >> _MANTISSA_SHIFT) & _MANTISSA_MASK).to(torch.float64)
    half = len(mantissas) // 2
    # The radius uniform lies in (0, 1] so its logarithm is finite; the angle uniform in [0, 1).
    radius_uniform = (_MANTISSA_SPAN - mantissas[:half]) / _MANTISSA_SPAN
    angle = (2.0 * math.pi / _MANTISSA_SPAN) * mantissas[half:]
    radius = torch.sqrt(-2.0 * torch.log(radius_uniform))
    return torch.cat((radius * torch.cos(angle), radius * torch.sin(angle)))


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


class SecureNoise(NoiseSource):
    """Gaussian noise from a ChaCha20 keystream keyed by the OS CSPRNG, hardened against floating-point
    attacks. The random bits are made on the CPU; the transform to normals runs in float64 on the device
    the noise is for, so a GPU neither waits for a CPU-side transform nor receives float64 noise."""

    def __init__(self) -> None:
        self._keystream = Keystream()

    @property
    def secure(self) -> bool:
        """Always True."""
        return True

    def normal(
        self, shape: torch.Size | tuple[int, ...], std: float, dtype: torch.dtype, device: torch.device
    ) -> torch.Tensor:
        """N(0, std^2) samples, computed in float64 on `device` and cast to `dtype`."""
        _check_request(std, dtype)
        size = torch.Size(shape)
        count = size.numel()
        if std == 0.0 or count == 0:
            return torch.zeros(size, dtype=dtype, device=device)
        out = torch.empty(count, dtype=dtype, device=device)
        for start in range(0, count, CHUNK_OUTPUTS):
            stop = min(start + CHUNK_OUTPUTS, count)
            words = self._keystream.words(SECURE_DRAWS * (stop - start)).to(device)
            draws = std * standard_normals(words)
            out[start:stop] = draws.reshape(SECURE_DRAWS, stop - start).sum(dim=0) / math.sqrt(SECURE_DRAWS)
        return out.reshape(size)


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
