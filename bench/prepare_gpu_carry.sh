#!/usr/bin/env bash
# Run HERE (package registry reachable) before a device call: fills the ignored folder .gpu-carry/ that the
# call carries (carry: [".gpu-carry"]) and bench/gpu_check.sh reads. Needs the project's .venv (make install).
set -euo pipefail
cd "$(dirname "$0")/.."
CARRY=.gpu-carry
OPACUS=opacus==1.6.0
grep -qx "/$CARRY/" .git/info/exclude 2>/dev/null || echo "/$CARRY/" >> .git/info/exclude
rm -rf "$CARRY"
mkdir -p "$CARRY/wheels"
# opacus is pure Python; everything else it needs is installed on the device machines (torch, scipy, opt-einsum).
.venv/bin/python -m pip download --quiet --no-deps --only-binary=:all: -d "$CARRY/wheels" "$OPACUS"
HF_HUB_OFFLINE=1 .venv/bin/python -m bench.gpu_carry "$CARRY"
du -sh "$CARRY"
