#!/usr/bin/env bash
# WSD (shared trunks) against cosine at the same (N, D), both objectives: ~6 min on 2 cores, then the analysis.
set -euo pipefail
cd "$(dirname "$0")/../.."
source .venv/bin/activate
llada sweep launch experiments/wsd-vs-cosine/sweep.yaml --wait cluster.parallel=2 cluster.torch_threads=1 "$@"
python experiments/wsd-vs-cosine/analyze.py runs/experiments/wsd-vs-cosine
