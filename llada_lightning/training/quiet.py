"""Silence Lightning's advertising and known-harmless warnings; keep everything a user must see."""

from __future__ import annotations

import logging
import warnings

_HARMLESS = (
    r".*`srun` command is available on your system but is not used.*",  # we start tasks ourselves
    r".*isinstance\(treespec, LeafSpec\)` is deprecated.*",
    r".*does not have many workers.*",  # data is memory-mapped; workers rarely help on CPU
    r".*resuming from a checkpoint that ended before the epoch ended.*",  # our sampler resumes exactly
    r".*Trying to infer the `batch_size`.*",
)


class _DropTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Tip:" not in record.getMessage()


def quiet_lightning() -> None:
    for pattern in _HARMLESS:
        warnings.filterwarnings("ignore", message=pattern)
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropTips) for f in logger.filters):
            logger.addFilter(_DropTips())
