#!/usr/bin/env bash
# The main job (after set-up): train a tiny LLaDA and a tiny ARM on the embedded corpus, print both losses.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
exec .venv/bin/llada demo "$@"
