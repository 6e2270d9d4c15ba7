"""Differential privacy: accounting (stateless math and a silo's ledger) and Gaussian noise sources."""

from aslora_core.mechanism import Mechanism
from aslora_core.privacy.accountant import FORMAT_VERSION, ChargeRecorder, PrivacyAccountant
from aslora_core.privacy.analysis import epsilon_spent, noise_multiplier_for
from aslora_core.privacy.events import FULL_BATCH, PrivacyEvent
from aslora_core.privacy.noise import NoiseSource, SecureNoise, SeededNoise, derive_seed, make_noise_source

__all__ = [
    "FORMAT_VERSION",
    "FULL_BATCH",
    "ChargeRecorder",
    "Mechanism",
    "NoiseSource",
    "PrivacyAccountant",
    "PrivacyEvent",
    "SecureNoise",
    "SeededNoise",
    "derive_seed",
    "epsilon_spent",
    "make_noise_source",
    "noise_multiplier_for",
]
