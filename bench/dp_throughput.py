"""DP-SGD step versus a non-private step on the same model and data: samples per second and peak memory,
side by side, on the CPU or a CUDA device; `--out FILE` also writes the rows as JSON.

    python -m bench.dp_throughput --steps 3 --out bench/results/dp_throughput.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from peft import PeftModel
from torch import nn
from transformers import AutoTokenizer

from aslora_core.adapters import attach_lora, default_model_path, load_base_classifier, read_adapter
from aslora_core.config import ComputeSettings, LoraSettings, PrivacySettings, TrainingSettings
from aslora_core.data import EncodedDataset, encode, load_table
from aslora_core.factor_choice import FactorChoice
from aslora_core.privacy import PrivacyAccountant
from aslora_core.tasks.sequence_classification import SequenceClassificationTask
from aslora_core.training import LocalTrainer
from bench.study_plans import SST2

SST2_TRAIN = SST2 / "train.tsv"
RECORDS = 13_000
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
KIB, MIB = 1024, 1 << 20
CLEAR_PEAK_RSS = "5"
"""Writing this to /proc/self/clear_refs resets the kernel's peak-RSS mark (Linux 4.0 and later)."""
MAX_LENGTH = 48
BATCH = 512


class PeakMemory:
    """Peak memory of what runs inside the block: CUDA allocations on a GPU, resident memory on the CPU."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak_mib = 0.0

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            Path("/proc/self/clear_refs").write_text(CLEAR_PEAK_RSS)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_mib = torch.cuda.max_memory_allocated(self.device) / MIB
            return
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                self.peak_mib = int(line.split()[1]) * KIB / MIB


def dp_rate(model: PeftModel, data: EncodedDataset, physical: int, steps: int, device: str) -> float:
    """Samples per second of the production DP trainer (Poisson batches, clipping, noise)."""
    state = read_adapter(model)
    trainer = LocalTrainer(
        silo_id="bench",
        task=SequenceClassificationTask(),
        model=model,
        data=data,
        training=TrainingSettings(local_steps=steps, batch_size=BATCH, lr=1.0),
        compute=ComputeSettings(device=device, physical_batch_size=physical, max_length=MAX_LENGTH),
        privacy=PrivacySettings(noise_multiplier=1.0, test_mode=True),
        accountant=PrivacyAccountant(),
        seed=0,
    )
    selection = {name: FactorChoice.B for name in state.layer_names}
    started = time.perf_counter()
    result = trainer.train_round(0, state, selection, 1.0)
    _synchronize(torch.device(device))
    return result.examples_seen / (time.perf_counter() - started)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def plain_rate(model: PeftModel, data: EncodedDataset, physical: int, steps: int, device: str) -> float:
    """Samples per second of ordinary mini-batch SGD on the same factors, chunks and lengths."""
    for name, param in model.named_parameters():
        param.requires_grad_("lora_B" in name or "modules_to_save" in name)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0)
    lengths = data.tensors["attention_mask"].sum(dim=1).numpy()
    rng = np.random.default_rng(0)
    model.to(device)
    model.train()
    seen = 0
    started = time.perf_counter()
    for _ in range(steps):
        indices = rng.choice(len(data), BATCH, replace=False)
        indices = indices[np.argsort(lengths[indices], kind="stable")]
        for start in range(0, BATCH, physical):
            batch = {
                k: v.to(device) for k, v in data.batch(indices[start : start + physical].tolist()).items()
            }
            labels = batch.pop("labels")
            nn.functional.cross_entropy(model(**batch).logits, labels, reduction="sum").backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        seen += BATCH
    _synchronize(torch.device(device))
    return seen / (time.perf_counter() - started)


def main() -> None:
    """Print one table row per physical chunk size: DP, non-private, their ratio, and peak memory of each."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--physical", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1...")
    parser.add_argument("--model", type=Path, default=None, help="model folder (default: MiniLM's package)")
    parser.add_argument("--data", type=Path, default=SST2_TRAIN, help="SST-2 style TSV (sentence, label)")
    parser.add_argument("--out", type=Path, default=None, help="also write the rows to this JSON file")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    path = str(args.model or default_model_path())
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    table = load_table(args.data)
    data = encode(table.subset(np.arange(min(RECORDS, len(table)))), tokenizer, MAX_LENGTH)
    model = attach_lora(load_base_classifier(path, num_labels=2), LoraSettings(), seed=0)
    device = torch.device(args.device)
    where = (
        torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} threads"
    )
    print(f"MiniLM LoRA r=8, SST-2, batch {BATCH}, {MAX_LENGTH} tokens, {where}, torch {torch.__version__}")
    memory = "peak GPU MiB" if device.type == "cuda" else "peak RSS MiB"
    print(
        "| physical chunk | DP samples/s | non-private samples/s | DP time / non-private time "
        f"| DP {memory} | non-private {memory} |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    dp_rate(model, data, args.physical[0], 1, args.device)  # warm-up: first-call allocations and hook set-up
    plain_rate(model, data, args.physical[0], 1, args.device)
    rows = []
    for physical in args.physical:
        with PeakMemory(device) as private_memory:
            private = dp_rate(model, data, physical, args.steps, args.device)
        with PeakMemory(device) as plain_memory:
            plain = plain_rate(model, data, physical, args.steps, args.device)
        print(
            f"| {physical} | {private:.1f} | {plain:.1f} | {plain / private:.2f} | "
            f"{private_memory.peak_mib:.0f} | {plain_memory.peak_mib:.0f} |"
        )
        rows.append(
            {
                "physical_chunk": physical,
                "dp_samples_per_second": private,
                "plain_samples_per_second": plain,
                "dp_time_over_plain_time": plain / private,
                "dp_peak_mib": private_memory.peak_mib,
                "plain_peak_mib": plain_memory.peak_mib,
            }
        )
    if args.out is not None:
        document = {
            "setup": {"device": where, "torch": torch.__version__, "steps": args.steps, "batch": BATCH},
            "rows": rows,
        }
        args.out.write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()
