"""Mask schedules: alpha, mask probability and ELBO weight against independent derivations."""

from __future__ import annotations

import math

import pytest
import torch

from llada_lightning.objectives.schedules import (
    CosineSchedule,
    LinearSchedule,
    PolynomialSchedule,
    get_schedule,
)

SCHEDULES = {
    "linear": lambda: get_schedule("linear"),
    "cosine": lambda: get_schedule("cosine"),
    "polynomial2": lambda: get_schedule("polynomial", power=2.0),
    "polynomial3": lambda: get_schedule("polynomial", power=3.0),
}

# Closed forms of alpha_t written out by hand (MDLM, Sahoo et al. 2024), in double precision.
ALPHA = {
    "linear": lambda t: 1.0 - t,
    "cosine": lambda t: math.cos(math.pi * t / 2),
    "polynomial2": lambda t: 1.0 - t**2,
    "polynomial3": lambda t: 1.0 - t**3,
}

TIMES = [1e-3, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.999]


@pytest.mark.parametrize("key", SCHEDULES)
def test_weight_matches_autograd_derivative_of_alpha(key):
    # From t = 0.01 on: below it, 1 - alpha(t) of the *reference* loses digits (t^3 = 1e-9 against 1).
    schedule = SCHEDULES[key]()
    t = torch.tensor(TIMES[1:], dtype=torch.float64, requires_grad=True)
    alpha = schedule.alpha(t)
    (alpha_prime,) = torch.autograd.grad(alpha.sum(), t)
    expected = -alpha_prime / (1.0 - alpha.detach())
    got = schedule.weight(t.detach())
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=0.0)


@pytest.mark.parametrize("key", SCHEDULES)
def test_weight_matches_finite_difference_of_handwritten_alpha(key):
    schedule = SCHEDULES[key]()
    alpha = ALPHA[key]
    h = 1e-6
    for t in TIMES[1:-1]:
        alpha_prime = (alpha(t + h) - alpha(t - h)) / (2 * h)  # central difference, error O(h^2)
        expected = -alpha_prime / (1.0 - alpha(t))
        got = schedule.weight(torch.tensor([t], dtype=torch.float64)).item()
        assert got == pytest.approx(expected, rel=1e-6), (key, t)


@pytest.mark.parametrize("key", SCHEDULES)
def test_alpha_and_mask_prob_match_handwritten_closed_forms(key):
    schedule = SCHEDULES[key]()
    t = torch.tensor(TIMES, dtype=torch.float64)
    expected_alpha = torch.tensor([ALPHA[key](x) for x in TIMES], dtype=torch.float64)
    torch.testing.assert_close(schedule.alpha(t), expected_alpha, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(schedule.mask_prob(t), 1.0 - expected_alpha, rtol=1e-9, atol=1e-15)


def test_closed_form_weights_from_spec():
    s = 0.37
    t = torch.tensor([s], dtype=torch.float64)
    assert LinearSchedule().weight(t).item() == pytest.approx(1 / s, rel=1e-12)
    x = math.pi * s / 2
    cosine = (math.pi / 2) * math.sin(x) / (1 - math.cos(x))
    assert CosineSchedule().weight(t).item() == pytest.approx(cosine, rel=1e-12)
    assert PolynomialSchedule(3.0).weight(t).item() == pytest.approx(3 / s, rel=1e-12)


def test_cosine_mask_prob_is_accurate_at_small_t_in_float32():
    # 1 - cos(x) cancels catastrophically in float32 near 0; the schedule must not.
    t = torch.tensor([1e-3, 1e-4], dtype=torch.float32)
    expected = [1 - math.cos(math.pi * x / 2) for x in (1e-3, 1e-4)]
    got = CosineSchedule().mask_prob(t).tolist()
    for g, e in zip(got, expected, strict=True):
        assert g == pytest.approx(e, rel=1e-5)


def test_polynomial_power_one_is_linear():
    t = torch.linspace(0.01, 0.99, 11, dtype=torch.float64)
    lin, poly = LinearSchedule(), PolynomialSchedule(1.0)
    torch.testing.assert_close(poly.mask_prob(t), lin.mask_prob(t))
    torch.testing.assert_close(poly.weight(t), lin.weight(t))


def test_get_schedule_rejects_unknown_name_listing_valid_ones():
    with pytest.raises(ValueError, match="linear, cosine, polynomial"):
        get_schedule("sqrt")


def test_polynomial_rejects_non_positive_power():
    with pytest.raises(ValueError, match="power"):
        get_schedule("polynomial", power=0.0)


def test_get_schedule_passes_power():
    schedule = get_schedule("polynomial", power=3.0)
    assert isinstance(schedule, PolynomialSchedule) and schedule.power == 3.0
