"""Benchmark of the Approach-3 fit (Hoffmann et al. 2022): 250 synthetic points, the full 4500-start L-BFGS-B grid.

Points are drawn from Chinchilla's law (E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28) at log-uniform
N in [1e7, 1e11] and D in [1e8, 1e13], with multiplicative log-normal noise. Prints the wall time of each
configuration and the recovered parameters against the truth. Target: under 2 minutes on 2 CPU cores.

    python benchmarks/bench_fit.py [--points 250] [--noise 0.003] [--workers 1 2] [--scipy-defaults]

`--study` instead times what `llada study` fits: `fit_study` on a 2 objectives x 3 budgets x 4 sizes IsoFLOP
sweep (24 points) with 200 bootstrap resamples, the parametric start grid full (4500) against coarse (72 starts,
study.COARSE_STARTS, the study's default), and reports whether both reach the same parametric optimum.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from llada_lightning.scaling import fit_parametric
from llada_lightning.scaling.parametric import start_grid

TRUTH = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}  # Hoffmann et al. 2022, eq. 10
SCIPY_DEFAULTS = {"ftol": 2.220446049250313e-09, "gtol": 1e-05}  # scipy's L-BFGS-B defaults (factr = 1e7)


def synthetic(n: int, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    nn = 10 ** rng.uniform(7, 11, n)
    dd = 10 ** rng.uniform(8, 13, n)
    t = TRUTH
    loss = (t["E"] + t["A"] / nn ** t["alpha"] + t["B"] / dd ** t["beta"]) * np.exp(rng.normal(0, noise, n))
    return nn, dd, loss


def study_benchmark(seed: int, noise: float) -> None:
    """fit_study on a small LLaDA/ARM IsoFLOP sweep: full vs coarse parametric starts."""
    from llada_lightning.scaling import Table, fit_study
    from llada_lightning.scaling.study import COARSE_STARTS

    rng = np.random.default_rng(seed)
    t = TRUTH
    rows = []
    for objective, k in (("arm", 1.0), ("llada", 16.0)):  # the MDM needs 16x the data for the same loss
        for budget in (1e18, 1e19, 1e20):
            n_opt = 0.6 * (budget / 6) ** 0.45 * k**-0.45
            for n in n_opt * np.logspace(-0.5, 0.5, 4):
                d = budget / (6 * n)
                loss = (t["E"] + t["A"] / n ** t["alpha"] + t["B"] / (d / k) ** t["beta"]) * np.exp(
                    rng.normal(0, noise)
                )
                rows.append({"objective": objective, "N": n, "D": d, "C": budget, "budget": budget, "loss": loss,
                             "status": "done", "convention": "6N"})  # fmt: skip
    table = Table(rows)
    print(f"fit_study on {len(rows)} points, 200 bootstrap resamples, load average {os.getloadavg()[0]:.2f}")
    results = {}
    for name, starts in (("coarse (72 starts)", COARSE_STARTS), ("full (4500 starts)", None)):
        start = time.perf_counter()
        results[name] = fit_study(table, n_bootstrap=200, seed=0, parametric_starts=starts)
        wall = time.perf_counter() - start
        par = {o: results[name]["objectives"][o]["parametric"] for o in ("arm", "llada")}
        print(f"{name:<20} {wall:>7.1f} s  " + "  ".join(
            f"{o}: E {p['E']:.4g} alpha {p['alpha']:.4g} beta {p['beta']:.4g} (objective {p['objective']:.6g})"
            for o, p in par.items()))  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=250)
    ap.add_argument("--noise", type=float, default=0.003, help="sd of log-normal noise on the loss")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--scipy-defaults", action="store_true", help="also run with scipy's default tolerances")
    ap.add_argument("--study", action="store_true", help="time fit_study (coarse vs full starts) instead")
    args = ap.parse_args()
    if args.study:
        study_benchmark(args.seed, args.noise)
        return

    nn, dd, loss = synthetic(args.points, args.noise, args.seed)
    configs = [(f"workers={w}", {"workers": w}) for w in args.workers]
    if args.scipy_defaults:
        configs.append(("scipy default tol", {"workers": max(args.workers), "options": SCIPY_DEFAULTS}))
    print(
        f"{args.points} points, noise {args.noise}, {len(start_grid())} starts, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}"
    )
    header = f"{'config':<20}{'wall s':>8}{'finite':>8}{'iters':>7}{'objective':>14}" + "".join(
        f"{k:>10}" for k in TRUTH
    )
    print(header)
    print(f"{'truth':<20}{'':>8}{'':>8}{'':>7}{'':>14}" + "".join(f"{v:>10.4g}" for v in TRUTH.values()))
    for name, kwargs in configs:
        start = time.perf_counter()
        fit = fit_parametric(nn, dd, loss, **kwargs)
        wall = time.perf_counter() - start
        params = fit.params()
        print(
            f"{name:<20}{wall:>8.1f}{fit.n_finite:>8d}{fit.n_iterations:>7d}{fit.objective:>14.8g}"
            + "".join(f"{params[k]:>10.4g}" for k in TRUTH)
        )
    print("rel. error of the last fit: " + ", ".join(f"{k} {params[k] / v - 1:+.2%}" for k, v in TRUTH.items()))


if __name__ == "__main__":
    main()
