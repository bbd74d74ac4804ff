"""What a sweep job runs: one `train()` of a resolved config, recording a failure instead of losing it.

Submitted through submitit (Slurm, debug) as `run_job(config_dict)`, or started by the local worker as
`python -m llada_lightning.sweep.job <run_dir>/config.yaml`.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from typing import Any

from omegaconf import OmegaConf


def run_job(config: dict[str, Any]) -> Any:
    """Train (or resume) the run described by `config` (a resolved RunConfig as a plain dict)."""
    from llada_lightning.config.compose import compose
    from llada_lightning.rundir import RunDirBusy, RunResult, is_rank_zero, write_result
    from llada_lightning.training.run import train

    threads = os.environ.get("LLADA_TORCH_THREADS")
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    cfg = compose([], base=OmegaConf.create(config), check=False)
    try:
        return train(cfg)
    except RunDirBusy:
        raise  # another live process owns the run: its directory is not this job's to mark failed
    except BaseException as exc:
        if is_rank_zero() and cfg.run_dir and not isinstance(exc, KeyboardInterrupt):
            failure = RunResult(
                status="failed",
                run_dir=str(cfg.run_dir),
                error=f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                traceback=traceback.format_exc()[-4000:],
                time=time.time(),
            )
            write_result(cfg.run_dir, failure)
        raise


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m llada_lightning.sweep.job RUN_DIR/config.yaml", file=sys.stderr)
        return 2
    config = OmegaConf.to_container(OmegaConf.load(args[0]), resolve=True)
    result = run_job(config)  # type: ignore[arg-type]
    return 0 if result.get("status") == "done" else 75


if __name__ == "__main__":
    sys.exit(main())
