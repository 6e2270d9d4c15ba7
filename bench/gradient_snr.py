"""Signal versus DP noise at the start of training: per-sample gradient norms and the mean clipped step."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch
from opacus import GradSampleModule
from torch import nn
from transformers import AutoTokenizer

from aslora_core.adapters import attach_lora, default_model_path, load_base_classifier, read_adapter
from aslora_core.config import ComputeSettings, LoraSettings, PrivacySettings, TrainingSettings
from aslora_core.data import encode, load_table
from aslora_core.factor_choice import Factor, FactorChoice
from aslora_core.privacy import PrivacyAccountant
from aslora_core.tasks.sequence_classification import SequenceClassificationTask
from aslora_core.training import LocalTrainer

SST2_TRAIN = Path(__file__).resolve().parents[2] / "shared" / "data" / "sst2" / "train.tsv"
MAX_LENGTH = 48
BATCH = 512
PHYSICAL_BATCH = 64
PER_SAMPLE_RECORDS = 128
MEAN_STEP_STRIDE = 5
"""Every fifth training record (13,470 of them) for the noise-free clipped step."""


def main() -> None:
    """Print a table of per-sample norms, mean clipped gradient norms and the noise norm per step."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sigma", type=float, default=0.8)
    parser.add_argument("--clip", type=float, default=1.0)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    path = str(default_model_path())
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    records = load_table(SST2_TRAIN)
    model = attach_lora(load_base_classifier(path, num_labels=2), LoraSettings(), seed=0)
    start = read_adapter(model)

    sample = encode(records.subset(np.arange(PER_SAMPLE_RECORDS) * 50), tokenizer, MAX_LENGTH)
    for name, param in model.named_parameters():
        param.requires_grad_("lora_B" in name or "modules_to_save" in name)
    model.train()
    gsm = GradSampleModule(model, batch_first=True, loss_reduction="sum", strict=False)
    batch = sample.batch(list(range(len(sample))))
    labels = batch.pop("labels")
    nn.functional.cross_entropy(gsm(**batch).logits, labels, reduction="sum").backward()
    squared = {"B": torch.zeros(len(sample)), "head": torch.zeros(len(sample))}
    for name, param in model.named_parameters():
        if param.requires_grad:
            part = "B" if "lora_B" in name else "head"
            squared[part] += (getattr(param, "grad_sample").flatten(1) ** 2).sum(dim=1)  # noqa: B009
    gsm.to_standard_module()

    data = encode(records.subset(np.arange(0, len(records), MEAN_STEP_STRIDE)), tokenizer, MAX_LENGTH)
    trainer = LocalTrainer(
        silo_id="snr",
        task=SequenceClassificationTask(),
        model=model,
        data=data,
        training=TrainingSettings(local_steps=1, batch_size=BATCH, lr=1.0),
        compute=ComputeSettings(physical_batch_size=PHYSICAL_BATCH, max_length=MAX_LENGTH),
        privacy=PrivacySettings(noise_multiplier=0.0, clip_norm=args.clip, test_mode=True),
        accountant=PrivacyAccountant(),
        seed=0,
    )
    update = trainer.train_round(0, start, {n: FactorChoice.B for n in start.layer_names}, 0.0).update
    layers = start.layer_names
    step = {
        "B": torch.cat([(update.factors[n][Factor.B] - start.layers[n].b).flatten() for n in layers]),
        "head": torch.cat([(update.head[k] - start.head[k]).flatten() for k in start.head]),
    }
    print(f"MiniLM LoRA r=8, SST-2, C {args.clip}, sigma {args.sigma}, b {BATCH}")
    print("| part | per-sample norm median (p90) | mean clipped gradient norm | noise norm per step |")
    print("| --- | --- | --- | --- |")
    for part, norms_sq in squared.items():
        norms = norms_sq.sqrt()
        noise = args.sigma * args.clip * np.sqrt(step[part].numel()) / BATCH
        print(
            f"| {part} (d={step[part].numel()}) | {norms.median():.4f} ({norms.quantile(0.9):.4f}) | "
            f"{step[part].norm():.4f} | {noise:.4f} |"
        )


if __name__ == "__main__":
    main()
