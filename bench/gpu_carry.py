"""Prepare what the GPU scripts need on a device machine that has no network and no copy of shared/.

`python -m bench.gpu_carry .gpu-carry`: MiniLM's weights in half precision with its tokenizer (45 MB,
under the 64 MiB a device call carries; the runs load them in float32) and SST-2's train.tsv and dev.tsv
in sst2/. `bench/prepare_gpu_carry.sh` calls this and fetches the wheels beside them.
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

import torch
from transformers import AutoModel, AutoTokenizer

from aslora_core.adapters import default_model_path
from bench.study_plans import SST2

SST2_FILES = ("train.tsv", "dev.tsv")


def main() -> None:
    """Write model/ and sst2/ into the carry folder."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("folder", type=Path)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    source = str(default_model_path())
    model = AutoModel.from_pretrained(source, local_files_only=True).to(torch.float16)
    model.save_pretrained(args.folder / "model")
    AutoTokenizer.from_pretrained(source, local_files_only=True).save_pretrained(args.folder / "model")
    (args.folder / "sst2").mkdir(parents=True, exist_ok=True)
    for name in SST2_FILES:
        shutil.copyfile(SST2 / name, args.folder / "sst2" / name)


if __name__ == "__main__":
    main()
