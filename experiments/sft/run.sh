#!/usr/bin/env bash
# SFT on this machine: pre-train a tiny LLaDA and the matched ARM (cpu-1m, 300 steps on the embedded corpus), fine-tune
# each on the built-in instruction set with `llada sft` (LLaDA's schedule, 300 steps), and print the held-out answer
# loss before and after (nats per answer token: LLaDA's conditional ELBO, the ARM's exact NLL) and a few chat replies.
# Relaunching reuses finished runs. Usage: bash experiments/sft/run.sh [OUT_DIR]   (default runs/sft-experiment)
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-runs/sft-experiment}
export TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
LLADA=.venv/bin/llada
start=$(date +%s)
for objective in llada arm; do
  $LLADA train objective=$objective model=cpu-1m train.max_steps=300 train.progress_bar=false run_dir="$OUT/$objective-base"
  $LLADA sft "$OUT/$objective-base" data=instructions train.max_steps=300 train.progress_bar=false run_dir="$OUT/$objective-sft"
done
echo "wall time: $(( $(date +%s) - start )) s"
.venv/bin/python - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
print(f"{'objective':<9} {'held-out answer loss: parent':>29} {'after SFT':>10}  kind")
for objective in ("llada", "arm"):
    r = json.loads((out / f"{objective}-sft" / "result.json").read_text())
    kind = "conditional ELBO (upper bound)" if objective == "llada" else "exact conditional NLL"
    print(f"{objective:<9} {r['val_loss_initial']:>29.3f} {r['val_loss']:>10.3f}  {kind}")
PY
for objective in llada arm; do
  for prompt in "Reverse the word night." "What is 12 plus 7?" "Write honey in capitals."; do
    printf '%s | %s -> ' "$objective" "$prompt"
    $LLADA sample "$OUT/$objective-sft" --chat --prompt "$prompt" --gen-length 16 --threads 2
  done
done
