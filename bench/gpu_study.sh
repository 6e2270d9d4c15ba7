#!/usr/bin/env bash
# A learning study on a device machine (docs/benchmarks.md section 0): the runs of PLAN (by default the
# selection study's GPU subset, 36 runs) in JOBS parallel processes sharing the GPU, reading the carried
# model and SST-2 (bench/prepare_gpu_carry.sh), writing bench/results/PLAN/, then printing the tables.
# Extra arguments go to bench.study (a CPU dry run here: PYTHON=.venv/bin/python DEVICE=cpu JOBS=1
# PHYSICAL=64 bash bench/gpu_study.sh --only '^eps3-ffa-seed0$' --results-dir /tmp/dry).
set -euo pipefail
cd "$(dirname "$0")/.."
PLAN=${PLAN:-sst2-gpu-subset}
JOBS=${JOBS:-12}  # 12 runs at once held 133 of the H200's 141 GB (PyTorch's caches, mostly)
PHYSICAL=${PHYSICAL:-1024}  # a whole Poisson batch (512 expected) in one forward: it fits with room
source bench/gpu_env.sh
started=$SECONDS
"$PYTHON" -m bench.study "$PLAN" --device "$DEVICE" --jobs "$JOBS" --physical-batch "$PHYSICAL" \
  --model "$CARRY/model" --sst2 "$CARRY/sst2" "$@"
echo "$PLAN: wall time $((SECONDS - started)) s with $JOBS jobs"
