"""Window placement: vertices of finished budgets, the predicted optimum, and windows centred on it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from llada_lightning.study.placement import Vertex, predict_optimum, vertex, window

LADDER = [1e3 * 2**i for i in range(8)]  # 1k .. 128k, a factor 2 apart


def parabola_losses(sizes, n_star, curvature=0.5, floor=3.0):
    return [floor + curvature * math.log10(n / n_star) ** 2 for n in sizes]


def test_vertex_is_the_parabola_minimum_and_flags_an_exterior_one():
    sizes = LADDER[2:7]
    v = vertex(1e12, sizes, parabola_losses(sizes, 11_000.0))
    assert v.interior and pytest.approx(11_000.0, rel=1e-9) == v.N
    outside = vertex(1e12, sizes, parabola_losses(sizes, 500.0))  # minimum below the sizes: the smallest is best
    assert not outside.interior and sizes[0] == outside.N
    assert vertex(1e12, sizes, [float("nan")] * len(sizes)) is None


def test_prediction_follows_the_power_law_through_the_vertices():
    a, k = 0.6, 3e-3
    vs = [Vertex(c, k * c**a, True) for c in (1e10, 1e11)]
    n, how = predict_optimum(1e12, vs, prior_exponent=0.5)
    assert n == pytest.approx(k * 1e12**a, rel=1e-9) and "C^0.60" in how
    # one vertex: moved by the prior exponent
    n1, how1 = predict_optimum(1e12, vs[:1], prior_exponent=0.5)
    assert n1 == pytest.approx(vs[0].N * 100**0.5, rel=1e-9) and "moved by" in how1
    # a slope outside [0, 1] is clipped (D* cannot fall as compute grows)
    steep = [Vertex(1e10, 1e3, True), Vertex(1e11, 1e5, True)]
    n2, how2 = predict_optimum(1e12, steep, prior_exponent=0.5)
    assert "C^1.00" in how2 and n2 == pytest.approx(np.exp(np.mean(np.log([1e3 / 1e10, 1e5 / 1e11]))) * 1e12)


def test_window_is_centred_on_the_prediction_and_says_when_it_hits_an_end():
    idx, clipped = window(LADDER, 16e3, 5)  # centre 16k: sizes 4k..64k
    assert idx == [2, 3, 4, 5, 6] and not clipped
    idx, clipped = window(LADDER, 1.5e3, 5)  # below the middle of the lowest window
    assert idx == [0, 1, 2, 3, 4] and clipped
    idx, clipped = window(LADDER, 4e3, 5)  # exactly the lowest window's centre
    assert idx == [0, 1, 2, 3, 4] and not clipped
    idx, clipped = window(LADDER, 1e6, 3)
    assert idx == [5, 6, 7] and clipped
    # an uneven ladder (the isoflop design's): a centre above the lowest window's middle, nearer it than the next
    # window's, is not beyond the smallest size
    uneven = [2088, 4668, 8272, 18552, 32928, 73968, 131392]
    idx, clipped = window(uneven, 11.9e3, 5)
    assert idx == [0, 1, 2, 3, 4] and not clipped
    idx, clipped = window(uneven, 3e3, 5)
    assert idx == [0, 1, 2, 3, 4] and clipped
