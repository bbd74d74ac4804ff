"""The local executor's detached worker: runs a queue of sweep runs on this machine, N at a time.

Started by `llada sweep launch --executor local`; each run is a child process
(`python -m llada_lightning.sweep.job config.yaml`) whose pid is recorded in the run's job.json, so
`llada sweep status` knows it from the run directory alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from llada_lightning.io import atomic_write_json


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    queue = json.loads(Path(args[0]).read_text())
    parallel = int(queue["parallel"])
    env = {**os.environ}
    if queue.get("torch_threads"):
        env["LLADA_TORCH_THREADS"] = str(queue["torch_threads"])
        env.setdefault("OMP_NUM_THREADS", str(queue["torch_threads"]))
    pending = list(queue["runs"])
    active: list[tuple[subprocess.Popen, dict]] = []
    failures = 0
    while pending or active:
        while pending and len(active) < parallel:
            run = pending.pop(0)
            run_dir = Path(run["run_dir"])
            log = run_dir / "job.log"
            with open(log, "ab") as fh:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "llada_lightning.sweep.job", str(run_dir / "config.yaml")],
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                    env=env,
                )
            record = {**run["record"], "pid": proc.pid, "started": time.time(), "log": str(log)}
            atomic_write_json(run_dir / "job.json", record)
            active.append((proc, run))
        time.sleep(0.2)
        still = []
        for proc, run in active:
            if proc.poll() is None:
                still.append((proc, run))
            elif proc.returncode:
                failures += 1
        active = still
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
