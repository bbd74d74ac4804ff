"""The `slurm_cluster` fixture: a single-node Slurm cluster on this machine (slurm/cluster.sh).

The tests are skipped when the cluster cannot be had here (not root, or apt-get cannot install Slurm);
under CI (CI=true) they fail instead. If the fixture started the cluster it stops it at the end of the
session, unless LLADA_SLURM_KEEP=1.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CLUSTER_SH = REPO / "slurm" / "cluster.sh"
SHIM_DIR = "/usr/local/bin"


@dataclass(frozen=True)
class SlurmCluster:
    node: str
    cpus: int
    partition: str = "debug"


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _unavailable(reason: str) -> None:
    if _in_ci():
        pytest.fail(f"the local Slurm cluster is required under CI: {reason}", pytrace=False)
    pytest.skip(reason)


def _run_cluster_sh(*args: str, timeout: float) -> tuple[int, str]:
    # Output to a file, not a pipe: a daemon that kept the pipe open would block the read.
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.run(
            ["bash", str(CLUSTER_SH), *args],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            check=False,
        )
        out.seek(0)
        return proc.returncode, out.read()


def _ensure_shim_first_in_path() -> None:
    """submitit runs `sacct` through PATH: the shim in /usr/local/bin must come before /usr/bin."""
    dirs = [d for d in os.environ.get("PATH", "").split(os.pathsep) if d and d != SHIM_DIR]
    os.environ["PATH"] = os.pathsep.join([SHIM_DIR, *dirs, "/usr/sbin", "/usr/bin"])


@pytest.fixture(scope="session")
def slurm_cluster():
    if os.geteuid() != 0:
        _unavailable("the local Slurm cluster needs root (cluster.sh installs packages, starts daemons)")
    if shutil.which("apt-get") is None and shutil.which("slurmctld", path="/usr/sbin:/usr/bin") is None:
        _unavailable("Slurm is not installed and apt-get is not available to install it")
    was_running = _run_cluster_sh("status", timeout=60)[0] == 0
    try:
        rc, out = _run_cluster_sh("start", timeout=600)
    except subprocess.TimeoutExpired:
        pytest.fail("slurm/cluster.sh start timed out after 600 s", pytrace=False)
    tail = "\n".join(out.splitlines()[-30:])
    if rc == 3:
        _unavailable(f"apt-get could not install Slurm:\n{tail}")
    elif rc != 0:
        pytest.fail(f"slurm/cluster.sh start failed (exit {rc}):\n{tail}", pytrace=False)
    _ensure_shim_first_in_path()
    info = subprocess.run(
        ["sinfo", "-h", "-N", "-o", "%N %c"], capture_output=True, text=True, check=True, timeout=30
    ).stdout.split()
    yield SlurmCluster(node=info[0], cpus=int(info[1]))
    if not was_running and os.environ.get("LLADA_SLURM_KEEP", "") != "1":
        _run_cluster_sh("stop", "--cancel-jobs", timeout=120)
