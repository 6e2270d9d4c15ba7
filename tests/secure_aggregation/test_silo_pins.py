"""A silo pins its secure-aggregation peers in its own config: names and certificate fingerprints,
checked when the config is read."""

from __future__ import annotations

from pathlib import Path

import pytest

from aslora_core.config import ConfigError
from aslora_rpc.secure_aggregation.signatures import PinnedPeers
from aslora_silo.config import load_silo_config
from tests.grpc.helpers import write_tsv

FINGERPRINT_B = "ab" * 32
FINGERPRINT_C = "0c" * 32


def _config(tmp_path: Path, tail: str) -> Path:
    path = tmp_path / "silo.toml"
    path.write_text(
        f'model_path = "{tmp_path / "model"}"\n[silo]\nname = "silo-a"\n'
        '[coordinator]\naddress = "127.0.0.1:7443"\n'
        f'[data]\ntrain_path = "{write_tsv(tmp_path / "train.tsv", 8)}"\n'
        "[privacy]\nmax_epsilon = 8.0\n" + tail
    )
    return path


def test_pinned_peers_are_read_by_name(tmp_path: Path) -> None:
    tail = f'[secure_aggregation.peers]\nsilo-b = "{FINGERPRINT_B}"\n"silo-c" = "{FINGERPRINT_C}"\n'
    config = load_silo_config(_config(tmp_path, tail))
    assert config.peers == PinnedPeers({"silo-b": FINGERPRINT_B, "silo-c": FINGERPRINT_C})


def test_no_pins_means_no_peer_is_trusted(tmp_path: Path) -> None:
    assert load_silo_config(_config(tmp_path, "")).peers == PinnedPeers()


@pytest.mark.parametrize(
    ("tail", "message"),
    [
        ('[secure_aggregation.peers]\nsilo-b = "AB12"\n', "64 lower-case hex digits"),
        ("[secure_aggregation.peers]\nsilo-b = 7\n", "silo-b"),
        ('[secure_aggregation]\npeer = "x"\n', r"unknown key\(s\) peer \(did you mean peers\?\)"),
    ],
)
def test_a_malformed_pin_is_refused_naming_the_key(tmp_path: Path, tail: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_silo_config(_config(tmp_path, tail))
