"""Prepare what `bench/gpu_check.sh` needs on a device machine that has no network and no copy of shared/.

`python -m bench.gpu_carry .gpu-carry`: MiniLM's weights in half precision with its tokenizer (45 MB,
under the 64 MiB a device call carries; the check computes in float32) and the first 13,000 SST-2
training records. `bench/prepare_gpu_carry.sh` calls this and fetches the opacus wheel beside them.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch
from transformers import AutoModel, AutoTokenizer

from aslora_core.adapters import default_model_path
from bench.dp_throughput import RECORDS, SST2_TRAIN

HEADER_LINES = 1


def main() -> None:
    """Write model/ and sst2-sample.tsv into the carry folder."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("folder", type=Path)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    source = str(default_model_path())
    model = AutoModel.from_pretrained(source, local_files_only=True).to(torch.float16)
    model.save_pretrained(args.folder / "model")
    AutoTokenizer.from_pretrained(source, local_files_only=True).save_pretrained(args.folder / "model")
    lines = SST2_TRAIN.read_text().splitlines()[: HEADER_LINES + RECORDS]
    (args.folder / "sst2-sample.tsv").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
