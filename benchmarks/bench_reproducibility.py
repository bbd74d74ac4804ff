"""Reproducibility, measured: the same run config and seed trained several ways, compared bit for bit.

    .venv/bin/python benchmarks/bench_reproducibility.py            # the two cheapest runs of the study design
    .venv/bin/python benchmarks/bench_reproducibility.py --run llada-m19k-6e10 --run arm-m19k-6e10

Each variant trains the run from scratch in a fresh process: twice with 1 torch thread (run to run), once with 2
threads, and once with ATEN_CPU_CAPABILITY=default (PyTorch's non-vectorised CPU kernels, a stand-in for a CPU
without AVX2/AVX-512: another machine of a different kind). The table says whether the validation loss and the
final weights (sha256 over the checkpoint's state dict) equal the first variant's exactly, and the largest
relative difference of the validation loss otherwise. Then the scaling fit of one synthetic sweep (with bootstrap
and the parametric law) is run twice in fresh processes and its fit.json compared byte for byte.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import hashlib, json, sys, torch
from llada_lightning.config.compose import compose
from llada_lightning.training.run import train
torch.set_num_threads(int(sys.argv[2]))
overrides = json.loads(sys.argv[1])
result = train(compose(overrides))
state = torch.load(result["run_dir"] + "/checkpoints/last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
h = hashlib.sha256()
for key in sorted(state):
    h.update(key.encode()); h.update(state[key].detach().contiguous().numpy().tobytes())
print("RESULT " + json.dumps({"val_loss": result["val_loss"], "weights": h.hexdigest(), "tokens": result["tokens"]}))
"""

VARIANTS = (
    ("1 thread", 1, {}),
    ("1 thread, again", 1, {}),
    ("2 threads", 2, {}),
    ("ATEN_CPU_CAPABILITY=default", 1, {"ATEN_CPU_CAPABILITY": "default"}),
)


def train_variant(overrides: list[str], threads: int, env: dict[str, str], run_dir: Path) -> dict:
    cmd = [sys.executable, "-c", CHILD, json.dumps([*overrides, f"run_dir={run_dir}"]), str(threads)]
    full_env = {**os.environ, "OMP_NUM_THREADS": str(threads), **env}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=full_env, check=False)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        raise SystemExit(f"training failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return json.loads(line[len("RESULT ") :])


def runs_of(design: str, names: list[str]) -> list:
    """Runs of a study design (all its cells, placed or provisional, as `llada study --dry-run` lists them)."""
    from llada_lightning.study import Study, load_design

    with tempfile.TemporaryDirectory() as tmp:
        runs = [p.run for p in Study(load_design(design), Path(tmp)).plan()]
    if names:
        chosen = [r for r in runs if r.name in names]
        missing = set(names) - {r.name for r in chosen}
        if missing:
            raise SystemExit(f"no run named {sorted(missing)} in {design}; runs: {[r.name for r in runs]}")
        return chosen
    cheapest = {}
    for r in sorted(runs, key=lambda r: r.flops("6N")):
        cheapest.setdefault(r.cfg.objective.name, r)
    return list(cheapest.values())


def fit_twice() -> bool:
    """fit_study of one synthetic sweep, twice in fresh processes: byte-identical fit.json?"""
    code = r"""
import json, sys
from pathlib import Path
sys.path.insert(0, "tests/scaling")
import numpy as np
from scaling_synth import study_points
from llada_lightning.scaling.table import Table, empty_row
from llada_lightning.scaling.study import COARSE_STARTS, fit_study
rows = []
for objective, c, n, d, loss in study_points(np.random.default_rng(0), budgets=(1e18, 1e19, 1e20), n_sizes=5):
    for ci, ni, di, li in zip(c.tolist(), n.tolist(), d.tolist(), loss.tolist()):
        row = empty_row(Path(""))
        row.update(objective=objective, N=ni, D=di, C=6 * ni * di, budget=ci, loss=li, status="done", convention="6N")
        rows.append(row)
print(json.dumps(fit_study(Table(rows), n_bootstrap=200, parametric_starts=COARSE_STARTS), sort_keys=True))
"""
    root = Path(__file__).resolve().parents[1]
    outs = [
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root).stdout
        for _ in range(2)
    ]
    return outs[0] == outs[1] and len(outs[0]) > 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--design", default="isoflop", help="a study design (name or YAML file)")
    ap.add_argument("--run", action="append", default=[], help="run name(s) of the design (default: the cheapest)")
    args = ap.parse_args()
    import torch

    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, {platform.platform()}")
    print(f"{'run':<36} {'variant':<30} {'val_loss':>18} {'same loss':>9} {'same weights':>12} {'rel. diff':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        for run in runs_of(args.design, args.run):
            first = None
            for i, (label, threads, env) in enumerate(VARIANTS):
                out = train_variant(run.overrides, threads, env, Path(tmp) / f"{run.name}-{i}")
                first = first or out
                same_loss = out["val_loss"] == first["val_loss"]
                rel = abs(out["val_loss"] - first["val_loss"]) / abs(first["val_loss"])
                print(
                    f"{run.name:<36} {label:<30} {out['val_loss']:>18.15f} {str(same_loss):>9} "
                    f"{str(out['weights'] == first['weights']):>12} {rel:>10.2e}"
                )
    print(f"fit_study of one synthetic sweep, twice in fresh processes: fit.json byte-identical: {fit_twice()}")


if __name__ == "__main__":
    main()
