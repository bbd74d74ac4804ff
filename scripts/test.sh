#!/usr/bin/env bash
# The whole test suite (after set-up): lint, format check, then pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
.venv/bin/ruff check llada_lightning tests benchmarks
.venv/bin/ruff format --check llada_lightning tests benchmarks
.venv/bin/python -m pytest -q "$@"
