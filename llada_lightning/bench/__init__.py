"""Benchmarks inside the package: `llada bench` (suite.py) and the training comparison it shares with
benchmarks/bench_train.py (train.py)."""
