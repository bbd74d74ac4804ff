#!/usr/bin/env bash
# A check of llada-lightning on one CUDA GPU: set-up (scripts/setup.sh, then a flash-attn wheel if one installs; never
# fatal), then in at most 8 minutes on an H100/H200 (about 5): flash-attn against SDPA, a bf16 training step of a ~1B
# LLaDA and its MFU, the memory planner against the measured peak, torch.compile, the sampler's tokens/s, FSDP on one
# GPU. One table; JSON in $OUT/gpu_check.json ($OUT set) or runs/bench/. Without a GPU (or with --cpu) every CUDA
# measurement is skipped with one line and the CPU-runnable parts run in seconds. The checks: benchmarks/gpu_check.py.
#
#   bash benchmarks/gpu_check.sh [--skip-setup] [--cpu] [--only attention,train,memory,compile,sampler,fsdp] [--budget 480]
set -uo pipefail
cd "$(dirname "$0")/.."
setup=1
args=()
for arg in "$@"; do
  case "$arg" in
    --skip-setup) setup=0 ;;
    *) args+=("$arg") ;;
  esac
done
PY=${PYTHON:-.venv/bin/python}
if [ "$setup" = 1 ]; then
  bash scripts/setup.sh || { echo "gpu_check: scripts/setup.sh failed" >&2; exit 1; }
  PY=.venv/bin/python
  if "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null \
    && ! "$PY" -c "import flash_attn" 2>/dev/null; then
    # a prebuilt wheel only: building flash-attn from source takes an hour, so a missing wheel means SDPA only
    if timeout 300 "$PY" -m pip install -q --only-binary=:all: flash-attn >/dev/null 2>&1; then
      echo "gpu_check: flash-attn installed"
    else
      echo "gpu_check: no flash-attn wheel for this torch/CUDA/Python: SDPA only"
    fi
  fi
fi
exec "$PY" benchmarks/gpu_check.py "${args[@]}"
