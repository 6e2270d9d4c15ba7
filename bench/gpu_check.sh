#!/usr/bin/env bash
# The GPU checks (docs/benchmarks.md section 3), run ON a device machine: no network, its own torch and
# transformers, plus what bench/prepare_gpu_carry.sh put in .gpu-carry/ here. Writes ONE JSON report,
# REPORT (on a device call: REPORT=$OUT/gpu_check.json), rewritten after each of its four parts
# (bench/gpu_check.py); the parts' own limits add up to 330 s and the whole stops at LIMIT_SECONDS, so
# with the wheels' install it fits in 6 minutes. A CPU dry run here, tiny shapes and no carry:
#   PYTHON=.venv/bin/python DEVICE=cpu SHAPES=tiny REPORT=/tmp/gpu_check.json bash bench/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
LIMIT_SECONDS=345
SHAPES=${SHAPES:-full}
REPORT=${REPORT:-bench/results/gpu_check-h200.json}
source bench/gpu_env.sh
timeout "$LIMIT_SECONDS" "$PYTHON" -m bench.gpu_check --device "$DEVICE" --shapes "$SHAPES" \
  --carry "$CARRY" --out "$REPORT"
