"""llada-lightning: scaling studies of masked diffusion LMs (LLaDA) against a matched autoregressive baseline."""

__version__ = "0.1.0"
