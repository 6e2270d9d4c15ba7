"""One contract, two stores: the in-memory and the file-backed StateStore keep and return the same
snapshot; the file store also survives a new process's view of the folder, writes atomically and refuses
checkpoints of an unknown format version or that are damaged."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from aslora_coordinator.state import (
    CheckpointError,
    CoordinatorSnapshot,
    FileStateStore,
    InMemoryStateStore,
    SiloSnapshot,
    StateStore,
)
from aslora_coordinator.state.files import CHECKPOINT_FILE, SNAPSHOT_KEY
from aslora_core.atomic_files import PRIVATE_FILE_MODE
from aslora_core.factors import AdapterState, LayerFactors
from aslora_core.privacy import PrivacyAccountant
from aslora_rpc.messages import RunState

StoreFactory = Callable[[Path], StateStore]
STORES: dict[str, StoreFactory] = {
    "memory": lambda folder: InMemoryStateStore(),
    "files": lambda folder: FileStateStore(folder / "state"),
}


def adapter(seed: int) -> AdapterState:
    generator = torch.Generator().manual_seed(seed)
    layers = {
        f"layer.{i}.query": LayerFactors(
            a=torch.randn(4, 16, generator=generator), b=torch.randn(16, 4, generator=generator)
        )
        for i in range(2)
    }
    head = {"classifier.weight": torch.randn(2, 16, generator=generator, dtype=torch.float64)}
    return AdapterState(layers=layers, head=head, scaling=2.0)


def snapshot(rounds_completed: int, seed: int = 0) -> CoordinatorSnapshot:
    accountant = PrivacyAccountant()
    accountant.record(1.1, 0.125, 2 * rounds_completed + 1)
    silo = SiloSnapshot(
        silo_id="silo-00",
        dataset_size=40,
        sample_rate=0.125,
        noise_multiplier=1.1,
        rounds_participated=rounds_completed,
        epsilon_reported=0.75 + rounds_completed,
        declined_reason=None,
        ledger=accountant.to_dict(),
    )
    declined = SiloSnapshot("silo-01", 56, 0.1, 1.2, 1, 0.5, "its own budget", PrivacyAccountant().to_dict())
    return CoordinatorSnapshot(
        run_id="0123456789ab",
        config_fingerprint="f" * 64,
        state=RunState.RUNNING,
        reason="",
        rounds_completed=rounds_completed,
        global_state=adapter(seed),
        policy_state={"policy": "aslora", "smoothed": {"layer.0.query": {"A": [0.1, 1e-300]}}},
        silos=(silo, declined),
        results={"rounds": [{"round": i} for i in range(rounds_completed)], "epsilon": 1 / 3},
        failed_attempts=rounds_completed % 2,
    )


def assert_same(actual: CoordinatorSnapshot, expected: CoordinatorSnapshot) -> None:
    for name, pair in expected.global_state.layers.items():
        assert torch.equal(actual.global_state.layers[name].a, pair.a)
        assert torch.equal(actual.global_state.layers[name].b, pair.b)
    for name, tensor in expected.global_state.head.items():
        got = actual.global_state.head[name]
        assert got.dtype == tensor.dtype and torch.equal(got, tensor)
    assert actual.global_state.scaling == expected.global_state.scaling
    assert actual.global_state.layer_names == expected.global_state.layer_names
    # Everything else compares as plain data, floats to the last bit.
    assert [getattr(actual, f) for f in FIELDS] == [getattr(expected, f) for f in FIELDS]


FIELDS = (
    "run_id",
    "config_fingerprint",
    "state",
    "reason",
    "rounds_completed",
    "policy_state",
    "silos",
    "failed_attempts",
)


@pytest.mark.parametrize("kind", sorted(STORES))
class TestStateStoreContract:
    """What every StateStore promises."""

    def test_nothing_before_the_first_save(self, kind: str, tmp_path: Path) -> None:
        assert STORES[kind](tmp_path).load() is None

    def test_load_returns_what_was_saved(self, kind: str, tmp_path: Path) -> None:
        store, saved = STORES[kind](tmp_path), snapshot(2)
        store.save(saved)
        loaded = store.load()
        assert loaded is not None
        assert_same(loaded, saved)
        assert loaded.results == saved.results

    def test_a_save_replaces_the_previous_snapshot(self, kind: str, tmp_path: Path) -> None:
        store = STORES[kind](tmp_path)
        store.save(snapshot(1, seed=1))
        store.save(snapshot(2, seed=2))
        loaded = store.load()
        assert loaded is not None
        assert_same(loaded, snapshot(2, seed=2))

    def test_later_changes_to_the_saved_tensors_do_not_reach_the_store(
        self, kind: str, tmp_path: Path
    ) -> None:
        store, saved = STORES[kind](tmp_path), snapshot(1)
        store.save(saved)
        saved.global_state.layers["layer.0.query"].a.add_(1.0)
        loaded = store.load()
        assert loaded is not None
        assert not torch.equal(
            loaded.global_state.layers["layer.0.query"].a, saved.global_state.layers["layer.0.query"].a
        )


class TestFileStateStore:
    """What only the file store does: durable, atomic, refusing what it cannot trust."""

    def test_another_store_on_the_same_folder_reads_the_checkpoint(self, tmp_path: Path) -> None:
        FileStateStore(tmp_path).save(snapshot(3))
        loaded = FileStateStore(tmp_path).load()
        assert loaded is not None
        assert_same(loaded, snapshot(3))

    def test_the_checkpoint_is_one_safetensors_file_with_json_metadata(self, tmp_path: Path) -> None:
        FileStateStore(tmp_path).save(snapshot(1))
        assert sorted(p.name for p in tmp_path.iterdir()) == [CHECKPOINT_FILE]
        with safe_open(str(tmp_path / CHECKPOINT_FILE), framework="pt") as handle:
            document = json.loads((handle.metadata() or {})[SNAPSHOT_KEY])
        assert document["format_version"] == 1 and document["run_id"] == "0123456789ab"

    def test_the_checkpoint_is_readable_by_its_owner_only(self, tmp_path: Path) -> None:
        FileStateStore(tmp_path).save(snapshot(1))
        assert stat.S_IMODE((tmp_path / CHECKPOINT_FILE).stat().st_mode) == PRIVATE_FILE_MODE

    def test_an_unknown_format_version_is_refused(self, tmp_path: Path) -> None:
        FileStateStore(tmp_path).save(snapshot(1))
        path = tmp_path / CHECKPOINT_FILE
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
        document = json.loads(metadata[SNAPSHOT_KEY])
        document["format_version"] = 99
        metadata[SNAPSHOT_KEY] = json.dumps(document)
        save_file(tensors, str(path), metadata=metadata)
        with pytest.raises(CheckpointError, match="state-format version 99"):
            FileStateStore(tmp_path).load()

    def test_a_damaged_checkpoint_is_refused(self, tmp_path: Path) -> None:
        FileStateStore(tmp_path).save(snapshot(1))
        path = tmp_path / CHECKPOINT_FILE
        path.write_bytes(path.read_bytes()[:100])
        with pytest.raises(CheckpointError, match="not a readable checkpoint"):
            FileStateStore(tmp_path).load()

    def test_a_failed_write_leaves_the_previous_checkpoint_and_no_temporary_file(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        store = FileStateStore(tmp_path)
        store.save(snapshot(1, seed=1))

        def full_disk(source: str, target: str) -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr("aslora_core.atomic_files.os.replace", full_disk)
        with pytest.raises(OSError, match="No space"):
            store.save(snapshot(2, seed=2))
        monkeypatch.undo()
        assert sorted(p.name for p in tmp_path.iterdir()) == [CHECKPOINT_FILE]
        loaded = store.load()
        assert loaded is not None
        assert_same(loaded, snapshot(1, seed=1))
