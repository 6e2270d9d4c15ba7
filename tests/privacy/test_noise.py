"""Gaussian noise sources: distribution, determinism, isolation from global RNGs, and seed derivation."""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
from collections.abc import Callable
from multiprocessing.connection import Connection

import numpy as np
import pytest
import torch
from scipy import stats

from aslora_core.privacy import NoiseSource, SecureNoise, SeededNoise, derive_seed, make_noise_source
from aslora_core.privacy import noise as noise_module

SAMPLES = 200_000
STD = 2.5
SIGNIFICANCE = 1e-3
"""Level of every statistical test; SecureNoise's tests are random and fail this often by chance."""
CPU = torch.device("cpu")
SEED = 1234
PINNED_SEED = 1413422979853830001
"""derive_seed(0, "silo-1", 3) as first released."""
KEYSTREAM_PROBE = 64
CHILD_TIMEOUT_SECONDS = 60.0

SOURCES: dict[str, Callable[[], NoiseSource]] = {
    "secure": SecureNoise,
    "seeded": lambda: SeededNoise(SEED),
}


@pytest.fixture(params=sorted(SOURCES))
def source(request: pytest.FixtureRequest) -> NoiseSource:
    return SOURCES[request.param]()


def _draw(source: NoiseSource, std: float = STD) -> np.ndarray:
    return source.normal((SAMPLES,), std, torch.float64, CPU).numpy()


def test_sample_variance_matches_std(source: NoiseSource) -> None:
    # With known mean 0, sum(x^2) / std^2 is chi-square with SAMPLES degrees of freedom; two-sided test.
    statistic = float(np.sum(_draw(source) ** 2)) / STD**2
    p_value = 2.0 * min(stats.chi2.cdf(statistic, SAMPLES), stats.chi2.sf(statistic, SAMPLES))
    assert p_value > SIGNIFICANCE


def test_sample_mean_is_zero(source: NoiseSource) -> None:
    z = float(np.mean(_draw(source))) * math.sqrt(SAMPLES) / STD
    assert abs(z) < stats.norm.isf(SIGNIFICANCE / 2)


def test_samples_are_normal(source: NoiseSource) -> None:
    assert stats.kstest(_draw(source) / STD, "norm").pvalue > SIGNIFICANCE


def test_seeded_noise_is_reproducible_and_seed_dependent() -> None:
    first, again, other = SeededNoise(7), SeededNoise(7), SeededNoise(8)
    a = first.normal((1000,), 1.0, torch.float32, CPU)
    assert torch.equal(a, again.normal((1000,), 1.0, torch.float32, CPU))
    assert not torch.equal(a, other.normal((1000,), 1.0, torch.float32, CPU))
    assert not torch.equal(a, first.normal((1000,), 1.0, torch.float32, CPU))


def test_seeded_noise_is_drawn_in_float64_then_cast() -> None:
    narrow = SeededNoise(3).normal((500,), 1.5, torch.float32, CPU)
    wide = SeededNoise(3).normal((500,), 1.5, torch.float64, CPU)
    assert torch.equal(narrow, wide.to(torch.float32))


def test_secure_noise_draws_differ() -> None:
    source = SecureNoise()
    assert not torch.equal(
        source.normal((64,), 1.0, torch.float64, CPU), source.normal((64,), 1.0, torch.float64, CPU)
    )


def test_secure_noise_is_keyed_from_os_urandom(monkeypatch: pytest.MonkeyPatch) -> None:
    requested: list[int] = []

    def fake_urandom(size: int) -> bytes:
        requested.append(size)
        return np.random.default_rng(0).bytes(size)

    monkeypatch.setattr(os, "urandom", fake_urandom)
    first = SecureNoise().normal((10, 3), 1.0, torch.float64, CPU)
    second = SecureNoise().normal((10, 3), 1.0, torch.float64, CPU)
    # The same OS bytes give the same keystream: the OS randomness decides everything.
    assert torch.equal(first, second)
    random_nonce = noise_module.NONCE_BYTES - noise_module.COUNTER_BYTES
    assert sorted(requested) == sorted([random_nonce, noise_module.KEY_BYTES] * 2)


def _next_draw_in_child(source: NoiseSource, connection: Connection) -> None:
    torch.set_num_threads(1)  # a forked child must not wait on the parent's thread pool
    connection.send(source.normal((KEYSTREAM_PROBE,), 1.0, torch.float64, CPU).numpy())
    connection.close()


def test_no_two_rounds_or_processes_share_a_keystream() -> None:
    """Each round's source draws its own key; a forked child of a keyed source draws a new one."""
    rounds = [SecureNoise().normal((KEYSTREAM_PROBE,), 1.0, torch.float64, CPU) for _ in range(2)]
    assert not torch.equal(rounds[0], rounds[1])
    source = SecureNoise()
    source.normal((KEYSTREAM_PROBE,), 1.0, torch.float64, CPU)  # keyed before the fork
    receiving, sending = multiprocessing.get_context("fork").Pipe(duplex=False)
    child = multiprocessing.get_context("fork").Process(target=_next_draw_in_child, args=(source, sending))
    child.start()
    assert receiving.poll(CHILD_TIMEOUT_SECONDS)
    from_child = torch.from_numpy(receiving.recv())
    child.join(CHILD_TIMEOUT_SECONDS)
    from_parent = source.normal((KEYSTREAM_PROBE,), 1.0, torch.float64, CPU)
    assert not torch.equal(from_child, from_parent)


def test_a_keystream_is_rekeyed_before_its_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    keys: list[int] = []
    real_urandom = os.urandom

    def counting_urandom(size: int) -> bytes:
        keys.append(size)
        return real_urandom(size)

    monkeypatch.setattr(os, "urandom", counting_urandom)
    monkeypatch.setattr(noise_module, "KEYSTREAM_LIMIT_BYTES", 3 * 8 * KEYSTREAM_PROBE)
    stream = noise_module.Keystream()
    first = stream.words(2 * KEYSTREAM_PROBE)
    second = stream.words(2 * KEYSTREAM_PROBE)  # past the limit: a new key
    assert keys.count(noise_module.KEY_BYTES) == 2
    assert not torch.equal(first, second)


@pytest.mark.parametrize("word", [0, -1, 1 << 62, -(1 << 62)])
def test_the_transform_is_finite_for_extreme_words(word: int) -> None:
    values = noise_module.standard_normals(torch.full((100,), word, dtype=torch.int64))
    assert torch.isfinite(values).all()


def test_secure_noise_spans_chunks() -> None:
    count = noise_module.CHUNK_OUTPUTS + 17
    values = SecureNoise().normal((count,), 1.0, torch.float64, CPU)
    head, tail = values[: noise_module.CHUNK_OUTPUTS], values[noise_module.CHUNK_OUTPUTS :]
    assert torch.isfinite(values).all()
    assert head.std().item() == pytest.approx(1.0, rel=0.05)
    assert tail.abs().max().item() > 0.0


@pytest.mark.parametrize("shape", [(3, 4), torch.Size([2, 3, 5]), (), (0, 5)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_shape_dtype_and_device_are_respected(
    source: NoiseSource, shape: torch.Size | tuple[int, ...], dtype: torch.dtype
) -> None:
    devices = [CPU, torch.device("cuda")] if torch.cuda.is_available() else [CPU]
    for device in devices:
        values = source.normal(shape, 0.5, dtype, device)
        assert values.shape == torch.Size(shape)
        assert values.dtype == dtype
        assert values.device.type == device.type


def test_zero_std_gives_zeros(source: NoiseSource) -> None:
    assert torch.equal(source.normal((4, 2), 0.0, torch.float32, CPU), torch.zeros(4, 2))


@pytest.mark.parametrize(
    ("std", "dtype"), [(-1.0, torch.float32), (math.nan, torch.float32), (1.0, torch.int64)]
)
def test_bad_requests_are_rejected(source: NoiseSource, std: float, dtype: torch.dtype) -> None:
    with pytest.raises(ValueError):
        source.normal((3,), std, dtype, CPU)


def test_global_random_states_are_untouched(source: NoiseSource) -> None:
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state(legacy=False)
    source.normal((1000,), 1.0, torch.float32, CPU)
    assert torch.equal(torch.get_rng_state(), torch_state)
    after = np.random.get_state(legacy=False)
    assert after["state"]["pos"] == numpy_state["state"]["pos"]
    assert np.array_equal(after["state"]["key"], numpy_state["state"]["key"])


def test_make_noise_source(caplog: pytest.LogCaptureFixture) -> None:
    secure = make_noise_source(secure=True, seed=5)
    assert isinstance(secure, SecureNoise)
    assert secure.secure
    noise_module._warn_seeded_once.cache_clear()
    with caplog.at_level(logging.WARNING, logger=noise_module.__name__):
        seeded = make_noise_source(secure=False, seed=5)
    assert isinstance(seeded, SeededNoise)
    assert not seeded.secure
    assert any(r.levelno == logging.WARNING and "NOT" in r.getMessage() for r in caplog.records)
    assert torch.equal(
        seeded.normal((8,), 1.0, torch.float32, CPU), SeededNoise(5).normal((8,), 1.0, torch.float32, CPU)
    )


def test_derive_seed_is_stable() -> None:
    # Pinned: changing the derivation would silently change every reproducible benchmark.
    assert derive_seed(0, "silo-1", 3) == derive_seed(0, "silo-1", 3) == PINNED_SEED


def test_derive_seed_is_distinct_and_in_range() -> None:
    seeds = {
        derive_seed(base, f"silo-{silo}", round_)
        for base in range(3)
        for silo in range(10)
        for round_ in range(30)
    }
    assert len(seeds) == 3 * 10 * 30
    assert all(0 <= seed < 2**noise_module.SEED_BITS for seed in seeds)
    assert derive_seed("1", 2) != derive_seed(1, "2")
    assert derive_seed("a", "bc") != derive_seed("ab", "c")
    assert derive_seed(12) != derive_seed(1, 2)
    with pytest.raises(ValueError):
        derive_seed()
