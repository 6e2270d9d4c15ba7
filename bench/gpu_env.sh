# Sourced by the GPU scripts, from the repository root, on a device machine: installs the carried wheels
# (bench/prepare_gpu_carry.sh) into a private folder in front of the machine's own packages and names
# the carry, the interpreter and the device. PYTHON and DEVICE may be overridden (a CPU dry run here:
# PYTHON=.venv/bin/python DEVICE=cpu, which uses that interpreter's own packages and installs nothing).
CARRY=.gpu-carry
PYTHON=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
export PYTHONPATH="$PWD" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
if [ "$DEVICE" != cpu ]; then
  SITE=$(mktemp -d /tmp/aslora-site.XXXXXX)
  "$PYTHON" -m pip install --quiet --no-index --no-deps --no-compile --target "$SITE" "$CARRY"/wheels/*.whl
  export PYTHONPATH="$SITE:$PWD"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
fi
