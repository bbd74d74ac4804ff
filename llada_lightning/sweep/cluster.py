"""Cluster configs (`configs/cluster/*.yaml`): where and how a sweep's jobs run."""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from llada_lightning.config.errors import ConfigError
from llada_lightning.config.paths import config_root, group_options

EXECUTORS = ("slurm", "local", "debug")  # submitit's Slurm and debug executors; our detached local worker


@dataclass
class ClusterConfig:
    """Slurm resources per run (tasks per node = `train.devices`, nodes = `train.num_nodes`) or local slots."""

    executor: str = "slurm"  # slurm | local | debug
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    time_min: int = 60  # wall-time limit per job, minutes
    gpus_per_node: int = 0  # 0: CPU jobs; else GPUs per node (normally == train.devices)
    cpus_per_task: int = 1
    mem_gb: float | None = None  # memory per node
    # memory of one GPU (GB = 1e9 bytes): `sweep launch --dry-run` warns about runs whose estimate exceeds it
    # (llada_lightning/planning); None: no check
    gpu_memory_gb: float | None = None
    setup: list[str] = field(default_factory=list)  # lines run before the job (module load, source venv)
    sbatch: dict[str, str] = field(default_factory=dict)  # extra sbatch parameters, e.g. {exclude: node3}
    array_parallelism: int = 64  # at most this many array tasks run at once
    signal_delay_s: int = 120  # USR2 this long before the time limit: checkpoint, then requeue
    max_requeues: int = 20  # after this many requeues a run is left failed
    parallel: int = 1  # local executor: runs at once
    torch_threads: int | None = None  # torch.set_num_threads per run (default: cores / parallel, local)


def load_cluster(name: str, overrides: list[str] | None = None) -> ClusterConfig:
    """A cluster config by name (configs/cluster/<name>.yaml) or path, with `cluster.key=value` overrides."""
    path = config_root() / "cluster" / f"{name}.yaml"
    if name.endswith((".yaml", ".yml")):
        from pathlib import Path

        path = Path(name)
    if not path.is_file():
        raise ConfigError(
            f"cluster={name}: no such cluster config; choose one of: {', '.join(group_options('cluster'))}"
        )
    dotlist = [o.removeprefix("cluster.") for o in overrides or [] if o.startswith("cluster.")]
    try:
        merged = OmegaConf.merge(
            OmegaConf.structured(ClusterConfig), OmegaConf.load(path), OmegaConf.from_dotlist(dotlist)
        )
        cfg: ClusterConfig = OmegaConf.to_object(merged)  # type: ignore[assignment]
    except OmegaConfBaseException as exc:
        raise ConfigError(f"cluster config {path}: {str(exc).splitlines()[0]}") from exc
    if cfg.executor not in EXECUTORS:
        raise ConfigError(f"cluster.executor={cfg.executor!r} is not one of: {', '.join(EXECUTORS)}")
    if cfg.parallel < 1 or cfg.array_parallelism < 1 or cfg.time_min < 1:
        raise ConfigError("cluster.parallel, cluster.array_parallelism and cluster.time_min must be >= 1")
    if cfg.gpu_memory_gb is not None and cfg.gpu_memory_gb <= 0:
        raise ConfigError(f"cluster.gpu_memory_gb={cfg.gpu_memory_gb} must be > 0 (GB per GPU), or null for no check")
    return cfg
