"""Path-shape metrics, the SPSA estimate and AdaMeZO's rebuilt moments, read from the real optimizers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import landscapes
from landscapes.inside import moment_snapshot, spsa_draws
from landscapes.metrics import line_offset, reversal_rate, valley_swing
from optimizers import make_optimizer


# --------------------------------------------------------------------------------- path shape
def test_valley_swing_is_the_largest_distance_from_the_floor_after_first_reaching_it():
    # Comes down from y = 2, overshoots to −0.5, back to 0.3, settles: the swing is 0.5.
    xy = np.array([[0, 2.0], [0.1, 1.0], [0.2, -0.5], [0.3, 0.3], [0.4, 0.01], [0.5, -0.01]])
    assert valley_swing(xy) == pytest.approx(0.5)
    assert valley_swing(xy[:2]) == 0.0  # never reached the floor
    # The same path rotated by 30°, measured across the rotated valley.
    a = math.radians(30)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    assert valley_swing(xy @ rot.T, angle=30) == pytest.approx(0.5)


def test_reversal_rate_counts_moves_across_the_valley_that_turn_back():
    zigzag = np.array([[i, (-1) ** i] for i in range(11)], dtype=float)
    assert reversal_rate(zigzag) == 1.0
    straight = np.array([[i, -0.1 * i] for i in range(11)], dtype=float)
    assert reversal_rate(straight) == 0.0
    flat = np.array([[i, 0.0] for i in range(11)], dtype=float)
    assert math.isnan(reversal_rate(flat))
    rng = np.random.default_rng(0)
    walk = np.cumsum(rng.normal(size=(4001, 2)), axis=0)
    assert reversal_rate(walk) == pytest.approx(0.5, abs=0.03)


def test_line_offset_is_zero_only_on_a_line():
    line = np.array([[0, 0], [1, 2], [-1, -2], [3, 6]], dtype=float)
    assert line_offset(line) == 0.0
    bent = np.array([[0, 0], [1, 0], [1, 1]], dtype=float)
    assert line_offset(bent) == pytest.approx(1 / 2)  # 1 unit off the line, path length 2
    ls = landscapes.get("rosenbrock")
    one = landscapes.run_trajectory(ls, "adamezo", 200, {"lr": 0.01}, seed_budget=1)
    two = landscapes.run_trajectory(ls, "adamezo", 200, {"lr": 0.01}, seed_budget=2)
    # (AdaMeZO with one direction moves along sign(z) scaled: a line too, up to δ = 1e-8 in m / (√v + δ).)
    assert line_offset(one.xy) < 1e-6 < 1e-3 < line_offset(two.xy)


# --------------------------------------------------------------------------------- SPSA
def test_spsa_draws_are_mezos_own_estimates():
    ls = landscapes.get("rosenbrock")
    d = spsa_draws(ls, (-1.5, 2.0), n=5, eps=1e-3, seed=3)
    theta = torch.nn.Parameter(torch.tensor([-1.5, 2.0], dtype=torch.float64))
    opt = make_optimizer("mezo", [theta], lr=1e-300, eps=1e-3, seed=3)
    for t in range(5):  # MeZO's first step at θ: its (seed, c) pair is draw 0
        seed = opt.seed_for_step(t)
        assert np.array_equal(d.z[t], opt.direction(seed)[0].numpy())
    opt.step(lambda: ls.f(theta))
    assert opt.history[0][1] == pytest.approx(d.c[0], rel=1e-12)
    assert d.gradient == pytest.approx([-155.0, -50.0])  # ∂f/∂x = −2(1−x) − 400x(y−x²), ∂f/∂y = 200(y−x²)


def test_spsa_is_unbiased_and_noisy():
    ls = landscapes.get("quadratic", kappa=10)
    draws = [spsa_draws(ls, (1.0, 0.5), n=2000, seed=s) for s in range(4)]
    pooled = np.concatenate([d.estimates for d in draws]).mean(axis=0)
    grad = draws[0].gradient
    assert np.linalg.norm(pooled - grad) / np.linalg.norm(grad) < 0.05
    assert all(np.median(d.single_errors()) > 0.5 for d in draws)
    with pytest.raises(ValueError, match="n must be an integer from 1 to 100000"):
        spsa_draws(ls, (1.0, 0.5), n=0)


# --------------------------------------------------------------------------------- moments
@pytest.mark.parametrize("step", [1, 4, 10])
def test_rebuilt_moments_equal_zo_adams_stored_ones_up_to_k_steps(step):
    snap = moment_snapshot(landscapes.get("quadratic", kappa=1000), step, {"lr": 0.007}, seed=5)
    assert len(snap.pairs) == step and snap.adamezo_bytes == 16 * step
    assert snap.relative_difference() < 1e-12
    np.testing.assert_allclose(snap.point, snap.zo_adam_point, rtol=0, atol=1e-12)


def test_after_k_steps_adamezo_forgets_and_the_moments_drift_apart():
    snap = moment_snapshot(landscapes.get("quadratic", kappa=1000), 20, {"lr": 0.007, "horizon": 10}, seed=5)
    assert len(snap.pairs) == 10 and snap.adamezo_bytes == 160
    assert snap.relative_difference() > 1e-3
    # The rebuilt moments are what the optimizer itself computes: weights sum to one, newest first.
    assert snap.weights_m.sum() == pytest.approx(1.0) and snap.weights_m[0] > snap.weights_m[-1]
    with pytest.raises(ValueError, match="needs beta2 > 0"):
        moment_snapshot("rosenbrock", 3, {"beta2": 0.0})
