"""What the run plan carries beyond the defaults reaches the silo processes: a causal-LM run and a
mean-pooled, separately clipped classifier give the in-process adapter bit for bit over gRPC."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from aslora_cli.federation_files import TEXT_COLUMN, write_jsonl
from aslora_cli.simulate_grpc import run_grpc_simulation
from aslora_core.config import HeadPooling, PrivacySettings, SimulationSettings, TaskName
from aslora_core.factors import AdapterState
from tests.tasks.builders import write_instructions
from tests.tasks.federation import run, task_settings
from tests.training.helpers import small_texts

RECORDS = 96
HEAD_CLIP = 0.3


def _assert_same_adapter(settings: SimulationSettings, folder: Path) -> None:
    federation, in_process = run(settings)
    over_grpc = run_grpc_simulation(settings, folder, threads_per_process=1)
    expected: AdapterState = federation.engine.state
    actual = over_grpc.final_state
    assert sorted(actual.layers) == sorted(expected.layers)
    for name, pair in expected.layers.items():
        assert torch.equal(actual.layers[name].a, pair.a), name
        assert torch.equal(actual.layers[name].b, pair.b), name
    assert actual.head.keys() == expected.head.keys()
    for name, tensor in expected.head.items():
        assert torch.equal(actual.head[name], tensor), name
    assert [r.loss for r in over_grpc.result.rounds] == [r.loss for r in in_process.rounds]


def test_causal_lm_over_grpc_matches_in_process(
    tiny_gpt2_dir: Path, tmp_path: Path, single_thread: None
) -> None:
    data = write_instructions(tmp_path / "instructions.jsonl", RECORDS)
    settings = task_settings(TaskName.CAUSAL_LM, tiny_gpt2_dir, data, lr=2.0, batch_size=24)
    _assert_same_adapter(settings, tmp_path / "grpc")


def test_mean_pooled_head_clipped_apart_over_grpc_matches_in_process(
    tiny_model_dir: Path, tmp_path: Path, single_thread: None
) -> None:
    data = write_jsonl(small_texts(RECORDS), tmp_path / "texts.jsonl")
    base = task_settings(
        TaskName.SEQUENCE_CLASSIFICATION, tiny_model_dir, data, lr=2.0, batch_size=24, text_column=TEXT_COLUMN
    )
    settings = dataclasses.replace(
        base,
        lora=dataclasses.replace(base.lora, head_pooling=HeadPooling.MEAN),
        privacy=PrivacySettings(noise_multiplier=1.0, head_clip_norm=HEAD_CLIP, test_mode=True),
    )
    _assert_same_adapter(settings, tmp_path / "grpc")
    assert settings.privacy.clip_groups == 2
