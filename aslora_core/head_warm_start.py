"""A zero-shot start for a mean-pooled head: each class's row is the embedding of a public text naming it."""

from __future__ import annotations

from pathlib import Path

import torch
from peft import PeftModel
from transformers import AutoTokenizer

from aslora_core.adapters import head_parameters
from aslora_core.config import ConfigError
from aslora_core.pooled_classifier import MeanPooledClassifier

LABEL_TEXT_HEAD_SCALE = 20.0
"""Multiplies the centred label-text embeddings. A sentence's cosine similarities to two label texts
differ by a few hundredths, so at this scale the started head's logits differ by about one."""
LABEL_TEXT_MAX_LENGTH = 64
"""Tokens kept of each label text (they are short descriptions)."""
CLASSIFIER_WEIGHT = "classifier.weight"


@torch.no_grad()
def warm_start_head(model: PeftModel, label_texts: tuple[str, ...], model_path: Path) -> None:
    """Set the head's rows to the scaled embeddings of `label_texts` less their mean (the shared part
    moves every logit alike, so it is dropped). Run before any training: LoRA's B is still zero, so the
    embeddings are the base model's own."""
    classifier = model.get_base_model()
    if not isinstance(classifier, MeanPooledClassifier):
        raise ConfigError("head_label_texts warm-start a mean-pooled head: set head_pooling = mean")
    weight = head_parameters(model)[CLASSIFIER_WEIGHT]
    if len(label_texts) != weight.shape[0]:
        raise ConfigError(f"head_label_texts: {len(label_texts)} texts for {weight.shape[0]} labels")
    tokenizer = AutoTokenizer.from_pretrained(str(model_path), local_files_only=True)
    encoded = tokenizer(
        list(label_texts),
        padding=True,
        truncation=True,
        max_length=LABEL_TEXT_MAX_LENGTH,
        return_tensors="pt",
    )
    was_training = model.training
    model.eval()
    device = weight.device
    embeddings = classifier.embed(**{name: tensor.to(device) for name, tensor in encoded.items()})
    model.train(was_training)
    centred = embeddings - embeddings.mean(dim=0, keepdim=True)
    weight.copy_((LABEL_TEXT_HEAD_SCALE * centred).to(weight.dtype))
