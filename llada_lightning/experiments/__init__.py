"""Experiments built on the package's training and inference layers (`llada experiment ...`)."""
