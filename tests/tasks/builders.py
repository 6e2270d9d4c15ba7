"""Tiny random models (GPT-2, Llama, ViT) with an offline word-level tokenizer, and real-looking data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    ViTConfig,
    ViTForImageClassification,
)

COLOURS = ("red", "green", "blue", "black", "white", "yellow", "purple", "orange")
THINGS = ("apple", "leaf", "sky", "night", "snow", "sun", "plum", "carrot")
SPECIAL = ("<unk>", "<eos>")
VOCAB_WORDS = (*SPECIAL, "question", "answer", "what", "colour", "is", "the", "?", ":", *COLOURS, *THINGS)
HIDDEN = 32
HEADS = 2
LAYERS = 2
POSITIONS = 32
IMAGE_SIZE = 16
PATCH_SIZE = 4
DIGIT_CLASSES = 10
DIGIT_MAX = 16
"""sklearn's digits are 8 x 8 with values 0-16."""
PIXEL_MAX = 255


def save_tokenizer(directory: Path) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over VOCAB_WORDS (EOS doubles as padding), saved into `directory`."""
    vocab = {word: index for index, word in enumerate(VOCAB_WORDS)}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, unk_token="<unk>", eos_token="<eos>", pad_token="<eos>"
    )
    tokenizer.save_pretrained(directory)
    return tokenizer


def save_tiny_gpt2(directory: Path, seed: int = 0) -> Path:
    """A 2-layer GPT-2 (32 wide) over the tiny vocabulary, with its tokenizer."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        config = GPT2Config(
            vocab_size=len(VOCAB_WORDS),
            n_positions=POSITIONS,
            n_embd=HIDDEN,
            n_layer=LAYERS,
            n_head=HEADS,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            bos_token_id=VOCAB_WORDS.index("<eos>"),
            eos_token_id=VOCAB_WORDS.index("<eos>"),
        )
        GPT2LMHeadModel(config).save_pretrained(directory)
    save_tokenizer(directory)
    return directory


def save_tiny_llama(directory: Path, seed: int = 0) -> Path:
    """A 2-layer Llama (32 wide) over the tiny vocabulary, with its tokenizer."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        config = LlamaConfig(
            vocab_size=len(VOCAB_WORDS),
            hidden_size=HIDDEN,
            intermediate_size=2 * HIDDEN,
            num_hidden_layers=LAYERS,
            num_attention_heads=HEADS,
            num_key_value_heads=HEADS,
            max_position_embeddings=POSITIONS,
            bos_token_id=VOCAB_WORDS.index("<eos>"),
            eos_token_id=VOCAB_WORDS.index("<eos>"),
            pad_token_id=VOCAB_WORDS.index("<eos>"),
        )
        LlamaForCausalLM(config).save_pretrained(directory)
    save_tokenizer(directory)
    return directory


def save_tiny_vit(directory: Path, seed: int = 0) -> Path:
    """A 2-layer ViT on 16 x 16 images in 4 x 4 patches (its head is replaced per run)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        config = ViTConfig(
            image_size=IMAGE_SIZE,
            patch_size=PATCH_SIZE,
            hidden_size=HIDDEN,
            num_hidden_layers=LAYERS,
            num_attention_heads=HEADS,
            intermediate_size=2 * HIDDEN,
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
        )
        config.num_labels = DIGIT_CLASSES
        ViTForImageClassification(config).save_pretrained(directory)
    return directory


def write_instructions(path: Path, count: int, offset: int = 0) -> Path:
    """JSONL prompt/response pairs: the colour of a thing (a fixed pairing the model can learn)."""
    with path.open("w", encoding="utf-8") as stream:
        for index in range(offset, offset + count):
            position = index % len(THINGS)
            row = {
                "prompt": f"question : what colour is the {THINGS[position]} ?",
                "response": f"answer : {COLOURS[position]}",
            }
            stream.write(json.dumps(row) + "\n")
    return path


def write_digits_npz(path: Path) -> Path:
    """scikit-learn's bundled digits (1,797 8 x 8 images, 10 classes) as 8-bit images in a .npz file."""
    digits = load_digits()
    images = np.round(digits.images / DIGIT_MAX * PIXEL_MAX).astype(np.uint8)
    np.savez(path, images=images, labels=digits.target.astype(np.int64))
    return path
