"""The trajectory engine: recording, divergence, repeats, sweeps, fair comparison and metrics."""

import math

import numpy as np
import pytest
import torch

from landscapes import (LANDSCAPES, custom, equal_budget, forward_passes_per_step, get, log_grid,
                        match_path_length, match_to_reference, path_length, run_budget, run_repeats,
                        run_trajectory, summarize, sweep, tune_lr)
from landscapes.engine import nanquantiles
from optimizers import OPTIMIZERS, make_optimizer


def test_trajectory_records_every_step_exactly_like_a_hand_written_loop():
    ls = get("rosenbrock")
    hyper = {"lr": 0.01, "betas": (0.7, 0.9), "horizon": 10}
    tr = run_trajectory(ls, "adamezo", steps=50, hyper=hyper, seed=3, seed_budget=4)
    theta = torch.nn.Parameter(torch.tensor(ls.start, dtype=torch.float64))
    opt = make_optimizer("adamezo", [theta], seed=3, seed_budget=4, **hyper)
    expected = [list(ls.start)]
    for _ in range(50):
        opt.step(lambda: ls.f(theta))
        expected.append(theta.detach().tolist())
    assert tr.xy.shape == (51, 2) and tr.loss.shape == (51,) and tr.forward_passes.shape == (51,)
    np.testing.assert_array_equal(tr.xy, np.array(expected))
    np.testing.assert_allclose(tr.loss, [ls(*p) for p in expected], rtol=1e-14)
    np.testing.assert_array_equal(tr.forward_passes, 2 * np.arange(51))
    assert tr.diverged_at is None and tr.xy.dtype == np.float64
    assert tr.final_loss == tr.loss[-1] < tr.loss[0]


@pytest.mark.parametrize("name, per_step", [("mezo", 2), ("adamezo", 2), ("zo-adam", 2), ("hizoo", 3),
                                            ("adam", 1), ("adamw", 1)])
def test_every_registered_optimizer_runs_and_counts_forward_passes(name, per_step):
    tr = run_trajectory("booth", name, steps=20, hyper={"lr": 1e-3}, seed=1)
    assert tr.forward_passes[-1] == 20 * per_step
    assert forward_passes_per_step(name) == per_step
    assert tr.loss[-1] < tr.loss[0]
    assert set(OPTIMIZERS) >= {"mezo", "adamezo", "zo-adam", "hizoo", "adam", "adamw"}


def test_start_override_and_seeds_matter_only_for_zeroth_order():
    a = run_trajectory("himmelblau", "mezo", 10, {"lr": 1e-3}, start=(1.0, 1.0), seed=0)
    b = run_trajectory("himmelblau", "mezo", 10, {"lr": 1e-3}, start=(1.0, 1.0), seed=1)
    assert tuple(a.xy[0]) == (1.0, 1.0) and not np.array_equal(a.xy, b.xy)
    c = run_trajectory("himmelblau", "adam", 10, {"lr": 1e-2}, seed=0, seed_budget=2)
    d = run_trajectory("himmelblau", "adam", 10, {"lr": 1e-2}, seed=5)
    np.testing.assert_array_equal(c.xy, d.xy)


def test_seed_budget_one_moves_along_a_single_line():
    tr = run_trajectory("quadratic", "mezo", 30, {"lr": 1e-3}, seed=2, seed_budget=1)
    steps = np.diff(tr.xy, axis=0)
    cross = steps[:, 0] * steps[0, 1] - steps[:, 1] * steps[0, 0]
    assert np.abs(cross).max() < 1e-12 * np.abs(steps).max() ** 2 * 1e3


def test_divergence_stops_at_the_first_non_finite_value():
    # unbounded below: MeZO runs x up the exponential until the loss overflows to -inf
    ls = custom("-exp(x) + y**2", ((-2, 2), (-2, 2)), (0.0, 0.5))
    tr = run_trajectory(ls, "mezo", steps=500, hyper={"lr": 0.1}, seed=0)
    assert tr.diverged_at == 15
    assert tr.n == tr.diverged_at == len(tr.xy) == len(tr.forward_passes)
    assert np.isfinite(tr.loss).all() and np.isfinite(tr.xy).all()
    assert tr.final_loss == math.inf
    assert tr.loss[-1] < -1e6  # it was running away when the next step overflowed
    # first-order Adam where the gradient is NaN (sqrt(|x|) at x = 0): the position turns NaN at step 1
    ls2 = custom("sqrt(abs(x)) + y**2", ((-1, 1), (-1, 1)), (0.0, 0.5))
    tr2 = run_trajectory(ls2, "adam", steps=50, hyper={"lr": 0.1})
    assert tr2.diverged_at == 1 and tr2.n == 1


def test_max_loss_counts_blow_ups_as_divergence():
    # A zeroth-order blow-up usually freezes at a huge *finite* loss: once |θ| ≫ ε/1e-16 the two
    # perturbed losses are equal in float64, c = 0 and θ stops moving. max_loss catches it.
    ls = get("rosenbrock")
    free = run_trajectory(ls, "mezo", 300, {"lr": 3e-3}, seed=0)
    assert free.diverged_at is None and free.loss[-1] > 1e20
    assert np.all(free.xy[-10:] == free.xy[-1])  # frozen
    capped = run_trajectory(ls, "mezo", 300, {"lr": 3e-3}, seed=0, max_loss=1e4)
    assert capped.diverged_at is not None and (capped.loss <= 1e4).all()
    n = capped.n
    np.testing.assert_array_equal(capped.xy, free.xy[:n])
    assert free.loss[: n + 1].max() > 1e4
    with pytest.raises(ValueError, match="max_loss"):
        run_trajectory(ls, "mezo", 3, max_loss="big")


def test_bad_arguments_raise_value_errors():
    with pytest.raises(ValueError, match="unknown optimizer 'sgd'"):
        run_trajectory("booth", "sgd", 5)
    with pytest.raises(ValueError, match="lr"):
        run_trajectory("booth", "mezo", 5, {"lr": -1.0})
    with pytest.raises(ValueError, match="steps must be a non-negative integer"):
        run_trajectory("booth", "mezo", -1)
    with pytest.raises(ValueError, match="pass seed_budget as its own argument"):
        run_trajectory("booth", "mezo", 5, {"seed_budget": 2})
    with pytest.raises(ValueError, match="unknown landscape"):
        run_trajectory("nowhere", "mezo", 5)
    tr = run_trajectory("booth", "adam", 0)
    assert tr.n == 1 and tr.forward_passes.tolist() == [0]


def test_repeats_bands_and_nan_padding():
    ls = get("rosenbrock")
    rep = run_repeats(ls, "mezo", 200, {"lr": 2e-3}, seeds=range(6), quantiles=(0.1, 0.9), max_loss=1e4)
    assert rep.losses.shape == (6, 201)
    # some seeds diverge at this lr; their rows are NaN after divergence and they count as inf finally
    assert 0 < rep.diverged < 6
    for i, tr in enumerate(rep.trajectories):
        np.testing.assert_array_equal(rep.losses[i, :tr.n], tr.loss)
        assert np.isnan(rep.losses[i, tr.n:]).all()
        assert rep.final_losses[i] == (math.inf if tr.diverged_at else tr.loss[-1])
    np.testing.assert_array_equal(rep.alive, np.isfinite(rep.losses).sum(0))
    col = rep.losses[:, 150]
    col = col[np.isfinite(col)]
    assert rep.median[150] == pytest.approx(np.median(col))
    assert rep.lower[150] == pytest.approx(np.quantile(col, 0.1))
    assert rep.upper[150] == pytest.approx(np.quantile(col, 0.9))
    assert (rep.lower <= rep.median + 1e-300).all() and (rep.median <= rep.upper + 1e-300).all()
    assert rep.median_final == np.median(rep.final_losses)
    with pytest.raises(ValueError, match="quantiles"):
        summarize(rep.trajectories, (0.9, 0.1))


def test_sweep_over_a_hyperparameter_and_over_the_seed_budget():
    ls = get("quadratic", kappa=100)
    sw = sweep(ls, "adamezo", "horizon", [1, 10], steps=100, hyper={"lr": 0.03}, seeds=[0, 1])
    assert sw.param == "horizon" and sw.values == [1, 10] and len(sw.results) == 2
    assert [r.trajectories[0].hyper["horizon"] for r in sw.results] == [1, 10]
    assert sw.results[0].trajectories[0].xy.tolist() != sw.results[1].trajectories[0].xy.tolist()
    sb = sweep(ls, "mezo", "seed_budget", [1, None], steps=50, hyper={"lr": 1e-3}, seeds=[0])
    assert [r.trajectories[0].seed_budget for r in sb.results] == [1, None]
    value, best = sw.best()
    assert best.median_final == min(sw.median_finals()) and value in (1, 10)
    with pytest.raises(ValueError, match="'lr' is swept"):
        sweep(ls, "mezo", "lr", [1e-3], hyper={"lr": 1e-3})


def test_tune_lr_picks_the_grid_minimum_and_ranks_blow_ups_last():
    ls = get("quadratic", kappa=100)
    lrs = log_grid(1e-3, 1e-1, 3)
    assert lrs == pytest.approx([1e-3, 1e-2, 1e-1])
    sw = tune_lr(ls, "mezo", lrs, steps=200, seeds=range(3), seed_budget=2)
    finals = sw.median_finals()
    assert finals[2] == math.inf  # lr 0.1 blows up on curvature 100 (lr·κ > 2)
    assert sw.best()[0] == 1e-2 and finals[1] < finals[0]


def test_path_length_matching_solves_for_lr():
    ls = get("quadratic", kappa=10)
    adam = run_trajectory(ls, "adam", 100, {"lr": 0.05})
    target = 1.5 * adam.path_length
    match = match_path_length(ls, "mezo", target, steps=100, seeds=[0], lr_bounds=(1e-5, 1.0), grid=9)
    assert match.path_length == pytest.approx(target, rel=5e-3)
    again = run_trajectory(ls, "mezo", 100, {"lr": match.lr}, seed=0)
    assert again.path_length == pytest.approx(match.path_length)
    assert path_length(np.array([[0, 0], [3, 4], [3, 0]])) == 9.0
    with pytest.raises(ValueError, match="no lr in"):
        match_path_length(ls, "mezo", 1e6, steps=20, lr_bounds=(1e-6, 1e-5), grid=3)


def test_match_to_reference_follows_the_papers_rule():
    ls = get("rotated-quadratic", kappa=10)
    out = match_to_reference(ls, ["mezo", "adamezo"], steps=80, reference_hyper={"lr": 0.05}, ratio=1.2,
                             lr_bounds=(1e-5, 1.0))
    assert out["adam"].lr == 0.05
    for name in ("mezo", "adamezo"):
        assert out[name].path_length == pytest.approx(1.2 * out["adam"].path_length, rel=5e-3)


def test_equal_budget_gives_each_optimizer_the_same_forward_passes():
    steps = equal_budget(600, ["adam", "mezo", "adamezo", "zo-adam", "hizoo"])
    assert steps == {"adam": 600, "mezo": 300, "adamezo": 300, "zo-adam": 300, "hizoo": 200}
    runs = run_budget("booth", ["adam", "mezo", "hizoo"], 60, hypers={"adam": {"lr": 0.1}})
    assert {k: int(v.forward_passes[-1]) for k, v in runs.items()} == {"adam": 60, "mezo": 60, "hizoo": 60}
    with pytest.raises(ValueError, match="budget"):
        equal_budget(0, ["adam"])


def test_metrics_of_a_run():
    ls = get("himmelblau")
    tr = run_trajectory(ls, "adam", 400, {"lr": 0.05})
    m = tr.metrics(ls)
    assert m.final_loss == tr.loss[-1] < 1e-6
    near, dist = ls.nearest_minimum(tuple(tr.xy[-1]))
    assert m.nearest_minimum == near and m.distance == dist < 1e-3
    assert m.path_length == pytest.approx(tr.path_length) and m.forward_passes == 400 and m.steps == 400
    assert m.threshold == pytest.approx(1e-3)
    hit = m.steps_to_threshold
    assert tr.loss[hit] <= 1e-3 and (tr.loss[:hit] > 1e-3).all()
    assert m.forward_passes_to_threshold == hit
    never = tr.metrics(ls, threshold=-1.0)
    assert never.steps_to_threshold is None and never.forward_passes_to_threshold is None
    ls2 = custom("-exp(x) + y**2", ((-2, 2), (-2, 2)), (0.0, 0.5), minima=[(0.0, 0.0, -1.0)])
    diverged = run_trajectory(ls2, "mezo", 500, {"lr": 0.1}).metrics(ls2)
    assert diverged.final_loss == math.inf and diverged.distance == math.inf
    assert diverged.diverged_at is not None


def test_every_catalogue_landscape_runs_with_adamezo():
    for name, ls in LANDSCAPES.items():
        tr = run_trajectory(ls, "adamezo", 30, {"lr": 0.01})
        assert tr.diverged_at is None and np.isfinite(tr.loss).all(), name
        assert tr.loss[-1] < tr.loss[0], name


@pytest.mark.parametrize("shape,nan_fraction", [((1, 50), 0.0), ((5, 300), 0.0), ((6, 201), 0.3), ((9, 40), 0.6)])
def test_nanquantiles_equals_numpy(shape, nan_fraction):
    rng = np.random.default_rng(shape[0] * 1000 + shape[1])
    a = rng.lognormal(size=shape)
    a[rng.random(shape) < nan_fraction] = np.nan
    a[0, np.isnan(a).all(axis=0)] = 1.5  # every column keeps a value
    qs = (0.5, 0.1, 0.9, 0.0, 1.0, 0.37)
    np.testing.assert_array_equal(nanquantiles(a, qs), np.nanquantile(a, qs, axis=0))
    with pytest.raises(ValueError, match="at least one non-NaN"):
        nanquantiles(np.full((2, 3), np.nan), qs)
