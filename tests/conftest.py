"""Suite-wide: an isolated tokenised-data cache (never the user's), offline hub libraries."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("LLADA_CACHE", tempfile.mkdtemp(prefix="llada-test-cache-"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

pytest_plugins = ["slurm_cluster_fixture"]  # the `slurm_cluster` fixture, shared by tests/slurm and tests/sweep
