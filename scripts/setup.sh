#!/usr/bin/env bash
# Idempotent set-up in ./.venv: torch 2.13.0 first (the CPU wheel on this kind of machine; a torch already in
# .venv, e.g. a user's CUDA build, is kept), then this package with its dev extras. Re-runs are instant.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=".venv/.llada-setup-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
  if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    # never let a dependency pull a CUDA build: pin the CPU wheel before anything else
    .venv/bin/python -m pip install -q torch==2.13.0 2>&1 | grep -v "^WARNING: Location" || true
  fi
  .venv/bin/python -m pip install -q -e ".[dev,eval]" 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -c "import torch, lightning, llada_lightning" || { echo "set-up failed" >&2; exit 1; }
  touch "$stamp"
fi
