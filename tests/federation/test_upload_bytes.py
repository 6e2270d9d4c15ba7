"""What a silo uploads per round: exactly the selected factors, the head and the score statistics.

The update comes from the real DP trainer on a model with RoBERTa-large widths (1024 hidden, LoRA r=8 on query
and value), serialized as the silo agent sends it; the test prints the aslora / fedit byte ratio.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import cast

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from aslora_core.adapters import attach_lora, read_adapter
from aslora_core.config import LoraSettings
from aslora_core.factor_choice import FactorChoice
from aslora_core.serialization import CURVATURE_PER_FACTOR, STATISTICS_PER_FACTOR, update_to_bytes
from tests.training.helpers import encoded_texts, make_trainer

HIDDEN = 1024
LAYERS = 4
RANK = 8
FLOAT32_BYTES = 4
FLOAT64_BYTES = 8
HEADER_LENGTH_BYTES = 8
MAX_OVERHEAD = 0.01
MAX_RATIO_TO_FEDIT = 0.51
"""DESIGN 11: at most 0.51 (half the factors, plus statistics under 1% of the update)."""
METADATA_KEYS = {"aslora_format", "silo_id", "weight", "statistics"}
"""No step count or noise variance: the receiver computes those from what it published."""


def _wide_model() -> torch.nn.Module:
    config = BertConfig(
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=16,
        intermediate_size=64,
        max_position_embeddings=64,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    config.num_labels = 2
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return BertForSequenceClassification(config)


def _split_payload(payload: bytes) -> tuple[dict[str, dict[str, object]], dict[str, str], int]:
    """(tensor entries, metadata, bytes of the tensor section) of a safetensors payload."""
    header_length = int.from_bytes(payload[:HEADER_LENGTH_BYTES], "little")
    header = json.loads(payload[HEADER_LENGTH_BYTES : HEADER_LENGTH_BYTES + header_length])
    metadata = header.pop("__metadata__")
    return header, metadata, len(payload) - HEADER_LENGTH_BYTES - header_length


@pytest.fixture(scope="module")
def payloads(tiny_model_dir: Path) -> dict[str, tuple[bytes, dict[str, FactorChoice], int]]:
    """aslora (layers alternating B and A) and fedit (both factors) updates of one round, serialized."""
    model = attach_lora(_wide_model(), LoraSettings(rank=RANK, alpha=16), seed=0)
    state = read_adapter(model)
    data = encoded_texts(tiny_model_dir, 16)
    selections = {
        "aslora": {
            name: FactorChoice.B if i % 2 == 0 else FactorChoice.A for i, name in enumerate(state.layer_names)
        },
        "fedit": dict.fromkeys(state.layer_names, FactorChoice.BOTH),
    }
    head_bytes = sum(t.numel() * t.element_size() for t in state.head.values())
    result = {}
    for policy, selection in selections.items():
        trainer = make_trainer(model, data, batch_size=4, local_steps=2)
        update = trainer.train_round(0, state, selection, 1.0).update
        result[policy] = (update_to_bytes(update), selection, head_bytes)
    return result


@pytest.mark.parametrize("policy", ["aslora", "fedit"])
def test_an_update_carries_the_selected_factors_the_head_and_the_statistics_only(
    payloads: dict[str, tuple[bytes, dict[str, FactorChoice], int]], policy: str
) -> None:
    payload, selection, head_bytes = payloads[policy]
    entries, metadata, tensor_bytes = _split_payload(payload)
    released = [(layer, which) for layer, choice in selection.items() for which in choice.factors]
    expected_names = {f"factor/{layer}/{which.value}" for layer, which in released}
    expected_names |= {f"stats/{layer}/{which.value}" for layer, which in released}
    assert {name for name in entries if not name.startswith("head/")} == expected_names
    assert set(metadata) == METADATA_KEYS
    factor_bytes = len(released) * HIDDEN * RANK * FLOAT32_BYTES
    # Two float64 scalars per released (layer, factor), and three more (its secant sums) for a factor
    # that trained alone (curvature).
    shapes = {name: cast(list[int], entry["shape"]) for name, entry in entries.items()}
    scalars = {name: shape[0] for name, shape in shapes.items() if name.startswith("stats/")}
    for layer, which in released:
        alone = len(selection[layer].factors) == 1
        assert scalars[f"stats/{layer}/{which.value}"] in (
            (STATISTICS_PER_FACTOR, STATISTICS_PER_FACTOR + CURVATURE_PER_FACTOR)
            if alone
            else (STATISTICS_PER_FACTOR,)
        )
    statistics_bytes = sum(scalars.values()) * FLOAT64_BYTES
    assert tensor_bytes == factor_bytes + head_bytes + statistics_bytes
    overhead = (len(payload) - tensor_bytes) / len(payload)
    print(f"{policy}: {len(payload)} bytes, header and metadata {overhead:.3%}")
    assert overhead <= MAX_OVERHEAD


def test_aslora_uploads_about_half_of_fedit(
    payloads: dict[str, tuple[bytes, dict[str, FactorChoice], int]],
) -> None:
    ratio = len(payloads["aslora"][0]) / len(payloads["fedit"][0])
    print(f"upload bytes aslora / fedit = {ratio:.4f}")
    aslora_factors = sum(len(choice.factors) for choice in payloads["aslora"][1].values())
    assert aslora_factors == LAYERS * 2 and all(len(c.factors) == 1 for c in payloads["aslora"][1].values())
    assert ratio <= MAX_RATIO_TO_FEDIT
