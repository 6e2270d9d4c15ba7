"""DP-SGD step versus a non-private step on the same model and data: samples per second, side by side."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch
from peft import PeftModel
from torch import nn
from transformers import AutoTokenizer

from aslora_core.adapters import attach_lora, default_model_path, load_base_classifier, read_adapter
from aslora_core.config import LoraSettings, PrivacySettings, TrainingSettings
from aslora_core.data import EncodedDataset, encode, load_table
from aslora_core.factors import FactorChoice
from aslora_core.privacy import PrivacyAccountant
from aslora_core.tasks.sequence_classification import SequenceClassificationTask
from aslora_core.training import LocalTrainer

SST2_TRAIN = Path(__file__).resolve().parents[2] / "shared" / "data" / "sst2" / "train.tsv"
RECORDS = 13_000
MAX_LENGTH = 48
BATCH = 512


def dp_rate(model: PeftModel, data: EncodedDataset, physical: int, steps: int) -> float:
    """Samples per second of the production DP trainer (Poisson batches, clipping, noise)."""
    state = read_adapter(model)
    trainer = LocalTrainer(
        silo_id="bench",
        task=SequenceClassificationTask(),
        model=model,
        data=data,
        training=TrainingSettings(
            local_steps=steps, batch_size=BATCH, physical_batch_size=physical, lr=1.0, max_length=MAX_LENGTH
        ),
        privacy=PrivacySettings(noise_multiplier=1.0, secure_noise=False),
        accountant=PrivacyAccountant(),
        seed=0,
    )
    selection = {name: FactorChoice.B for name in state.layer_names}
    started = time.perf_counter()
    result = trainer.train_round(0, state, selection, 1.0)
    return result.examples_seen / (time.perf_counter() - started)


def plain_rate(model: PeftModel, data: EncodedDataset, physical: int, steps: int) -> float:
    """Samples per second of ordinary mini-batch SGD on the same factors, chunks and lengths."""
    for name, param in model.named_parameters():
        param.requires_grad_("lora_B" in name or "modules_to_save" in name)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0)
    lengths = data.tensors["attention_mask"].sum(dim=1).numpy()
    rng = np.random.default_rng(0)
    model.train()
    seen = 0
    started = time.perf_counter()
    for _ in range(steps):
        indices = rng.choice(len(data), BATCH, replace=False)
        indices = indices[np.argsort(lengths[indices], kind="stable")]
        for start in range(0, BATCH, physical):
            batch = data.batch(indices[start : start + physical].tolist())
            labels = batch.pop("labels")
            nn.functional.cross_entropy(model(**batch).logits, labels, reduction="sum").backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        seen += BATCH
    return seen / (time.perf_counter() - started)


def main() -> None:
    """Print one table row per physical chunk size: DP, non-private, and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--physical", type=int, nargs="+", default=[64, 128])
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    path = str(default_model_path())
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    data = encode(load_table(SST2_TRAIN).subset(np.arange(RECORDS)), tokenizer, MAX_LENGTH)
    model = attach_lora(load_base_classifier(path, num_labels=2), LoraSettings(), seed=0)
    print(f"MiniLM LoRA r=8, SST-2, batch {BATCH}, {MAX_LENGTH} tokens, {torch.get_num_threads()} threads")
    print("| physical chunk | DP samples/s | non-private samples/s | DP time / non-private time |")
    print("| --- | --- | --- | --- |")
    dp_rate(model, data, args.physical[0], steps=1)  # warm-up: first-call allocations and hook set-up
    plain_rate(model, data, args.physical[0], steps=1)
    for physical in args.physical:
        private = dp_rate(model, data, physical, args.steps)
        plain = plain_rate(model, data, physical, args.steps)
        print(f"| {physical} | {private:.1f} | {plain:.1f} | {plain / private:.2f} |")


if __name__ == "__main__":
    main()
