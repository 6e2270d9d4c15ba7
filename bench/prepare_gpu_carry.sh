#!/usr/bin/env bash
# Run HERE (package registry reachable) before a device call: fills the ignored folder .gpu-carry/ that the
# call carries (carry: [".gpu-carry"]) and the GPU scripts read. Needs the project's .venv (make install).
set -euo pipefail
cd "$(dirname "$0")/.."
CARRY=.gpu-carry
# Pure-Python wheels at the project's versions; what they need is installed on the device machines (torch,
# transformers, accelerate, scipy, opt-einsum). The machine's own peft may be another version.
WHEELS=(opacus==1.6.0 peft==0.21.2)
grep -qx "/$CARRY/" .git/info/exclude 2>/dev/null || echo "/$CARRY/" >> .git/info/exclude
rm -rf "$CARRY"
mkdir -p "$CARRY/wheels"
.venv/bin/python -m pip download --quiet --no-deps --only-binary=:all: -d "$CARRY/wheels" "${WHEELS[@]}"
HF_HUB_OFFLINE=1 .venv/bin/python -m bench.gpu_carry "$CARRY"
du -sh "$CARRY"
