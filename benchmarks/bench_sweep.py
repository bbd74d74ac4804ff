"""Launcher overhead: a dry run of a 100-run spec, then its submission to the local Slurm cluster (target < 10 s).

Starts the cluster of `slurm/cluster.sh` if needed (root), submits the 100 runs as one job array with the
runs held (`--begin=now+3600`), times it, then cancels them, so nothing trains. Prints a table.

    python benchmarks/bench_sweep.py
"""

from __future__ import annotations

import io
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from llada_lightning.sweep import launch

REPO = Path(__file__).resolve().parents[1]
SPEC = """name: bench100
root: {root}
cluster: local-slurm
base: [data.seq_len=32, train.batch_size=4, train.max_steps=null]
grid:
  objective: [llada, arm]
  model: [cpu-0.1m, cpu-0.4m, cpu-1m, cpu-1.6m, cpu-3.5m]
  train.flops_budget: [1e12, 2e12, 4e12, 8e12, 16e12]
  train.seed: [0, 1]
"""


def main() -> None:
    if subprocess.run(["bash", str(REPO / "slurm" / "cluster.sh"), "start"], capture_output=True).returncode:
        raise SystemExit("could not start the local Slurm cluster (needs root): bash slurm/cluster.sh start")
    os.environ["PATH"] = "/usr/local/bin:" + os.environ["PATH"]  # the sacct shim first
    dry, submit = [], []
    for _ in range(3):
        with tempfile.TemporaryDirectory() as tmp:
            spec = Path(tmp) / "bench100.yaml"
            spec.write_text(SPEC.format(root=tmp))
            t0 = time.perf_counter()
            report = launch(str(spec), dry_run=True, out=io.StringIO())
            t1 = time.perf_counter()
            sub = launch(str(spec), executor="slurm", out=io.StringIO(), overrides=["cluster.sbatch.begin=now+3600"])
            t2 = time.perf_counter()
            assert len(report.runs) == 100 and len(sub.submitted) == 100
            subprocess.run(["scancel", *{j.split("_")[0] for j in sub.submitted.values()}], check=False)
            dry.append(t1 - t0)
            submit.append(t2 - t1)
    print(f"{'step':<34} {'median s':>9} {'min s':>7}")
    print(f"{'dry run (expand + state + plan)':<34} {statistics.median(dry):>9.2f} {min(dry):>7.2f}")
    print(f"{'launch to local Slurm (1 array)':<34} {statistics.median(submit):>9.2f} {min(submit):>7.2f}")
    total = statistics.median(dry) + statistics.median(submit)
    print(f"{'dry run + submission':<34} {total:>9.2f}    (target < 10 s; 100 runs; 3 repeats)")


if __name__ == "__main__":
    main()
