"""`llada demo`: a tiny LLaDA and a tiny ARM, same data and compute, trained one after the other (~1 min)."""

from __future__ import annotations

from typing import Any

from llada_lightning.config.compose import compose
from llada_lightning.training.run import train

DEMO_OVERRIDES = [
    "model=cpu-1m",
    "data.seq_len=128",
    "train.batch_size=16",
    "train.max_steps=300",
    "train.val_every_n_steps=100",
]


def run_demo(runs_root: str = "runs/demo", extra: list[str] | None = None) -> list[dict[str, Any]]:
    """Train both objectives on the embedded corpus; print and return their results."""
    results = []
    for objective in ("llada", "arm"):
        cfg = compose([f"objective={objective}", *DEMO_OVERRIDES, f"runs_root={runs_root}", *(extra or [])])
        results.append(train(cfg))
    print()
    print(
        f"{'objective':<9} {'model':<8} {'N_nonemb':>10} {'tokens':>10} {'FLOPs(6N)':>10} "
        f"{'val loss':>9} {'val bpb':>8} {'kind':>5} {'wall s':>7}"
    )
    for r in results:
        print(
            f"{r['objective']:<9} {r['model']:<8} {r['N_nonemb']:>10,} {r['tokens']:>10,} {r['flops_6N']:>10.3g} "
            f"{r['val_loss']:>9.4f} {r['val_bpb']:>8.4f} {r['val_loss_kind']:>5} {r['wall_time_s']:>7.1f}"
        )
    print("val loss: nats/token; LLaDA's is its ELBO (an upper bound on the NLL), ARM's the exact NLL.")
    return results
