#!/usr/bin/env bash
# The selection study's GPU subset (docs/benchmarks.md section 0), run ON a device machine: the 36 runs of
# plan sst2-gpu-subset in JOBS parallel processes sharing the GPU, reading the carried model and SST-2
# (bench/prepare_gpu_carry.sh), writing bench/results/sst2-gpu-subset/, then printing the tables.
# Extra arguments go to bench.study (a CPU dry run here: PYTHON=.venv/bin/python DEVICE=cpu JOBS=1
# PHYSICAL=64 bash bench/gpu_study.sh --only '^eps3-ffa-seed0$' --results-dir /tmp/dry).
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-12}
PHYSICAL=${PHYSICAL:-1024}  # a whole Poisson batch (512 expected) in one forward: it fits with room
source bench/gpu_env.sh
started=$SECONDS
"$PYTHON" -m bench.study sst2-gpu-subset --device "$DEVICE" --jobs "$JOBS" --physical-batch "$PHYSICAL" \
  --model "$CARRY/model" --sst2 "$CARRY/sst2" "$@"
echo "wall time: $((SECONDS - started)) s with $JOBS jobs"
