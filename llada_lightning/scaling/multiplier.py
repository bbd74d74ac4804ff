"""Compute multiplier between two frontiers (Nie et al. 2024, SMDM, sec. 3): the k with L_MDM(k C) = L_ARM(C).

k > 1 means the masked diffusion model needs k times the compute of the ARM to reach the ARM's loss at C
(SMDM: k ~ 16 on SlimPajama at 6e18..1e20 FLOPs). From the fitted frontier L = E + A C^-alpha the inverse is
closed-form: k C = ((L_ARM(C) - E_MDM) / A_MDM)^(-1 / alpha_MDM); NaN where L_ARM(C) <= E_MDM (the MDM never
gets there at any compute).
"""

from __future__ import annotations

import numpy as np

from llada_lightning.scaling.frontier import Frontier
from llada_lightning.scaling.isoflop import IsoFLOPFit


def compute_multiplier(frontier_mdm: Frontier, frontier_arm: Frontier, compute, *, unreachable: float = np.nan):
    """k(C) such that L_MDM(k C) = L_ARM(C), for each C in `compute`; `unreachable` (NaN, or inf: the MDM needs
    unbounded compute) where L_ARM(C) <= E_MDM."""
    c = np.asarray(compute, dtype=np.float64)
    target = frontier_arm.predict(c)
    k = frontier_mdm.compute_for_loss(target) / c
    return np.where(target - frontier_mdm.E > 0, k, unreachable)


def optimal_size_ratio(isoflop_mdm: IsoFLOPFit, isoflop_arm: IsoFLOPFit, compute) -> np.ndarray:
    """N*_MDM(C) / N*_ARM(C) from the two IsoFLOP power laws (SMDM finds about 1/2)."""
    return isoflop_mdm.predict_n_opt(compute) / isoflop_arm.predict_n_opt(compute)
