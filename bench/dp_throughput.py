"""The production DP round against bare non-private loops over fixed and over Poisson batches (bench/
dp_cost.py) on MiniLM + LoRA and SST-2 records, on the CPU or a CUDA device; `--out FILE` writes JSON.

    python -m bench.dp_throughput --steps 3 --out bench/results/dp_throughput.json

`--before DIR` measures another checkout's trainer (DIR holds its `aslora_core/`, e.g. a `git worktree`
of an earlier commit) beside this one's, alternating the two in child processes `--repeats` times, so
that both sides meet the same machine load; the JSON then holds every run of both.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoTokenizer

from aslora_core.adapters import attach_lora, default_model_path, load_base_classifier
from aslora_core.config import LoraSettings, Precision
from aslora_core.data import EncodedDataset, encode, load_table
from aslora_core.precision import base_dtype
from aslora_core.tasks.sequence_classification import SequenceClassificationTask
from bench.dp_cost import Workload, compare
from bench.study_plans import SST2

SST2_TRAIN = SST2 / "train.tsv"
RECORDS = 13_000
MAX_LENGTH = 48
BATCH = 512
REPOSITORY = Path(__file__).resolve().parents[1]
SIDE_TIMEOUT_SECONDS = 3600
ERROR_TAIL_CHARS = 4000


def minilm_data(model: Path, data: Path, records: int = RECORDS) -> EncodedDataset:
    """The first `records` SST-2 sentences through MiniLM's tokenizer, at most MAX_LENGTH tokens."""
    tokenizer = AutoTokenizer.from_pretrained(str(model), local_files_only=True)
    table = load_table(data)
    return encode(table.subset(np.arange(min(records, len(table)))), tokenizer, MAX_LENGTH)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """One row per physical chunk size with this checkout's trainer, and the setup they ran in."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    path = args.model or default_model_path()
    data = minilm_data(path, args.data)
    precision = Precision(args.precision)
    base = load_base_classifier(str(path), num_labels=2, dtype=base_dtype(precision))
    model = attach_lora(base, LoraSettings(), seed=0)
    device = torch.device(args.device)
    where = (
        torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} threads"
    )
    rows = [
        compare(
            Workload(
                model=model,
                data=data,
                task=SequenceClassificationTask(),
                batch=BATCH,
                physical=physical,
                steps=args.steps,
                device=args.device,
                precision=precision,
                secure_noise=not args.seeded_noise,
            )
        )
        for physical in args.physical
    ]
    setup = {"model": "MiniLM-L6 LoRA r=8", "data": "SST-2", "max_length": MAX_LENGTH, "device": where}
    return {"setup": {**setup, "torch": torch.__version__, "load_average": os.getloadavg()}, "rows": rows}


def print_rows(rows: list[dict[str, Any]], label: str = "") -> None:
    """A markdown table: samples/s of the three sides and the two ratios, per physical chunk."""
    print(
        "| side | physical chunk | DP samples/s | plain (Poisson) samples/s | plain (fixed) samples/s "
        "| DP / plain Poisson | DP / plain fixed | DP peak MiB |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(
            f"| {label} | {row['physical_chunk']} | {row['dp_round']['samples_per_second']:.1f} "
            f"| {row['plain_poisson']['samples_per_second']:.1f} "
            f"| {row['plain_fixed']['samples_per_second']:.1f} | {row['dp_over_plain_poisson']:.2f} "
            f"| {row['dp_over_plain_fixed']:.2f} | {row['dp_round']['peak_mib']:.0f} |"
        )


def _side_command(args: argparse.Namespace) -> list[str]:
    """This measurement in a child process that prints its JSON (`-P`: the shim folder decides imports)."""
    command = [sys.executable, "-P", "-m", "bench.dp_throughput", "--json-stdout"]
    command += ["--steps", str(args.steps), "--device", args.device, "--precision", args.precision]
    command += ["--physical", *map(str, args.physical), "--data", str(args.data)]
    if args.model is not None:
        command += ["--model", str(args.model)]
    if args.seeded_noise:
        command.append("--seeded-noise")
    return command


def _commit(checkout: Path) -> str:
    found = subprocess.run(
        ["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    )
    return found.stdout.strip() or "unknown"


def run_sides(args: argparse.Namespace) -> dict[str, Any]:
    """`before` (args.before's aslora_core) and `after` (this checkout's), alternated in child processes
    whose import path is a shim folder: the side's `aslora_core` and this checkout's `bench`."""
    sides: dict[str, dict[str, Any]] = {
        "before": {"commit": _commit(args.before), "runs": []},
        "after": {"commit": _commit(REPOSITORY), "runs": []},
    }
    sources = {"before": args.before.resolve(), "after": REPOSITORY}
    with tempfile.TemporaryDirectory() as shims:
        for name, source in sources.items():
            folder = Path(shims) / name
            folder.mkdir()
            (folder / "aslora_core").symlink_to(source / "aslora_core")
            (folder / "bench").symlink_to(REPOSITORY / "bench")
        for _ in range(args.repeats):
            for name in sources:
                env = {**os.environ, "PYTHONPATH": str(Path(shims) / name)}
                done = subprocess.run(
                    _side_command(args),
                    env=env,
                    capture_output=True,
                    text=True,
                    check=False,
                    timeout=SIDE_TIMEOUT_SECONDS,
                )
                if done.returncode != 0:
                    raise RuntimeError(f"the {name} side failed:\n{done.stderr[-ERROR_TAIL_CHARS:]}")
                run = json.loads(done.stdout.splitlines()[-1])
                sides[name]["runs"].append(run)
                print_rows(run["rows"], name)
    return {"sides": sides}


def main() -> None:
    """Print (and with --out write) the rows: this checkout's, or before and after side by side."""
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--physical", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1...")
    parser.add_argument("--precision", default=Precision.FLOAT32.value, choices=[p.value for p in Precision])
    parser.add_argument("--model", type=Path, default=None, help="model folder (default: MiniLM's package)")
    parser.add_argument("--data", type=Path, default=SST2_TRAIN, help="SST-2 style TSV (sentence, label)")
    parser.add_argument("--seeded-noise", action="store_true", help="seeded noise instead of the secure one")
    parser.add_argument("--before", type=Path, default=None, help="a checkout to measure beside this one")
    parser.add_argument("--repeats", type=int, default=3, help="with --before: runs of each side")
    parser.add_argument("--out", type=Path, default=None, help="also write the rows to this JSON file")
    parser.add_argument("--json-stdout", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.json_stdout:
        print(json.dumps(measure(args)))
        return
    document = run_sides(args) if args.before is not None else measure(args)
    if args.before is None:
        print(json.dumps(document["setup"]))
        print_rows(document["rows"])
    if args.out is not None:
        args.out.write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()
