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

from llada_lightning.bench.suite import SWEEP_SPEC
from llada_lightning.sweep import launch

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    if subprocess.run(["bash", str(REPO / "slurm" / "cluster.sh"), "start"], capture_output=True).returncode:
        raise SystemExit("could not start the local Slurm cluster (needs root): bash slurm/cluster.sh start")
    os.environ["PATH"] = "/usr/local/bin:" + os.environ["PATH"]  # the sacct shim first
    dry, submit = [], []
    for _ in range(3):
        with tempfile.TemporaryDirectory() as tmp:
            spec = Path(tmp) / "bench100.yaml"
            spec.write_text(SWEEP_SPEC.format(root=tmp, cluster="local-slurm"))
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
