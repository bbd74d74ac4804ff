"""Sweeps: grid specs expanded into runs with stable signatures, launched on Slurm (submitit) or locally."""

from llada_lightning.sweep.cluster import ClusterConfig, load_cluster
from llada_lightning.sweep.launch import launch, statuses, wait_for
from llada_lightning.sweep.manage import cancel, logs, status_table
from llada_lightning.sweep.spec import Run, SweepSpec, expand, load_spec

__all__ = [
    "ClusterConfig",
    "Run",
    "SweepSpec",
    "cancel",
    "expand",
    "launch",
    "load_cluster",
    "load_spec",
    "logs",
    "status_table",
    "statuses",
    "wait_for",
]
