#!/usr/bin/env bash
# The GPU checks (docs/benchmarks.md section 3), run ON a device machine: no network, its own torch and
# transformers, plus what bench/prepare_gpu_carry.sh put in .gpu-carry/ here. Prints one table: DP-SGD
# versus non-private samples/s and peak GPU memory of MiniLM + LoRA at logical batch 512. Stops itself
# within 5 minutes. A CPU dry run here: PYTHON=.venv/bin/python DEVICE=cpu bash bench/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
LIMIT_SECONDS=270
source bench/gpu_env.sh
timeout "$LIMIT_SECONDS" "$PYTHON" -m bench.dp_throughput --device "$DEVICE" --model "$CARRY/model" \
  --data "$CARRY/sst2/train.tsv" --steps 3 --physical 128 512
