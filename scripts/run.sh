#!/usr/bin/env bash
# The main job (after set-up): a complete CPU scaling study of LLaDA against the matched ARM on the embedded corpus:
# the `isoflop` study design (5 budgets over 1.5 decades x 5 sizes x 2 objectives = 50 runs, each budget's size window
# placed from the finished smaller budgets) through the local executor, then fits, plots and a summary.
# A second run reuses every finished run and only refits (~3 min). Extra arguments go to `llada study`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
exec .venv/bin/llada study "$@"
