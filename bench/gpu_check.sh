#!/usr/bin/env bash
# The GPU checks (docs/benchmarks.md section 3), run ON a device machine: no network, its own torch,
# transformers and peft, plus what bench/prepare_gpu_carry.sh put in .gpu-carry/ here. Prints one table:
# DP-SGD versus non-private samples/s and peak GPU memory of MiniLM + LoRA at logical batch 512.
# Finishes well inside 5 minutes on an H100. PYTHON and DEVICE may be overridden (a CPU dry run here:
# PYTHON=.venv/bin/python DEVICE=cpu bash bench/gpu_check.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
CARRY=.gpu-carry
PYTHON=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
SITE=$(mktemp -d /tmp/aslora-site.XXXXXX)
LIMIT_SECONDS=270
"$PYTHON" -m pip install --quiet --no-index --no-deps --no-compile --target "$SITE" "$CARRY"/wheels/*.whl
export PYTHONPATH="$SITE:$PWD" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
if [ "$DEVICE" != cpu ]; then nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; fi
timeout "$LIMIT_SECONDS" "$PYTHON" -m bench.dp_throughput --device "$DEVICE" --model "$CARRY/model" \
  --data "$CARRY/sst2-sample.tsv" --steps 3 --physical 128 512
