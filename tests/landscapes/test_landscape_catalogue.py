"""The catalogue: minima agree with scipy.optimize from many starts, functions are torch-differentiable,
parameters are validated, grids are numerically safe."""

import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from landscapes import LANDSCAPES, Landscape, get, names, parameters

REQUIRED = ["rosenbrock", "beale", "himmelblau", "booth", "rastrigin", "ackley", "six-hump-camel",
            "goldstein-price", "styblinski-tang", "mccormick", "quadratic", "rotated-quadratic", "saddle"]


def value_and_grad(ls: Landscape):
    def fun(v):
        p = torch.tensor(v, dtype=torch.float64, requires_grad=True)
        out = ls.f(p)
        (g,) = torch.autograd.grad(out, p)
        return float(out.detach()), g.numpy().copy()
    return fun


def local_min(ls, x0):
    res = minimize(value_and_grad(ls), np.asarray(x0, dtype=np.float64), jac=True, method="L-BFGS-B",
                   bounds=list(ls.domain), options={"ftol": 1e-13, "gtol": 1e-9, "maxiter": 500})
    return res.x, float(res.fun)


def test_catalogue_has_every_required_landscape_with_complete_facts():
    assert set(REQUIRED) <= set(LANDSCAPES)
    assert list(LANDSCAPES) == names()
    for name, ls in LANDSCAPES.items():
        assert ls.name == name and ls.title and ls.formula
        (x0, x1), (y0, y1) = ls.domain
        assert x0 < x1 and y0 < y1
        assert ls.contains(ls.start), name
        assert isinstance(ls.log_scale, bool)
        assert ls.minima, name  # every catalogue landscape has a known minimum
        for x, y, _ in ls.minima + ls.local_minima:
            assert ls.contains((x, y)), (name, x, y)
        assert math.isfinite(ls(*ls.start))
        # the start is not already at a minimum
        assert ls(*ls.start) > ls.f_min + 0.1, name


@pytest.mark.parametrize("name", names())
def test_catalogued_minima_have_the_stated_values_and_are_local_minima(name):
    ls = LANDSCAPES[name]
    for x, y, fv in ls.minima + ls.local_minima:
        assert ls(x, y) == pytest.approx(fv, abs=1e-8), (x, y)
        # scipy started nearby converges back to the same point and value
        for dx, dy in [(0.03, 0.02), (-0.02, 0.03)]:
            xm, fm = local_min(ls, (x + dx, y + dy))
            assert fm == pytest.approx(fv, abs=1e-7)
            assert np.hypot(xm[0] - x, xm[1] - y) < 1e-3, (xm, x, y)


@pytest.mark.parametrize("name", names())
def test_no_start_finds_anything_lower_than_the_global_minimum(name):
    """scipy from a 7 × 7 grid of starts: the best value found equals the catalogue's global minimum,
    and every start ends at a value >= it (up to round-off)."""
    ls = LANDSCAPES[name]
    (x0, x1), (y0, y1) = ls.domain
    found = []
    for sx in np.linspace(x0, x1, 7):
        for sy in np.linspace(y0, y1, 7):
            found.append(local_min(ls, (sx, sy)))
    values = np.array([fm for _, fm in found])
    assert values.min() >= ls.f_min - 1e-8
    assert values.min() == pytest.approx(ls.f_min, abs=1e-6)
    best = found[int(values.argmin())][0]
    _, distance = ls.nearest_minimum(tuple(best))
    assert distance < 1e-3


def test_himmelblau_lists_all_four_minima_and_scipy_reaches_each():
    ls = get("himmelblau")
    assert len(ls.minima) == 4
    reached = set()
    (x0, x1), (y0, y1) = ls.domain
    for sx in np.linspace(x0, x1, 7):
        for sy in np.linspace(y0, y1, 7):
            xm, fm = local_min(ls, (sx, sy))
            if fm < 1e-10:
                m, d = ls.nearest_minimum(tuple(xm))
                assert d < 1e-4
                reached.add(m)
    assert reached == set(ls.minima)


def test_functions_are_batched_and_differentiable():
    pts = torch.tensor([[[0.3, -0.2], [1.0, 1.0]], [[-1.5, 2.0], [0.5, 0.5]]], dtype=torch.float64)
    for name, ls in LANDSCAPES.items():
        out = ls.f(pts)
        assert out.shape == (2, 2) and out.dtype == torch.float64, name
        for i in range(2):
            for j in range(2):
                assert float(out[i, j]) == pytest.approx(ls(*pts[i, j].tolist()), rel=1e-12, abs=1e-12)
        # autograd gradient agrees with central differences
        p = torch.tensor([0.37, -0.61], dtype=torch.float64, requires_grad=True)
        (g,) = torch.autograd.grad(ls.f(p), p)
        h = 1e-6
        fd = [(ls(0.37 + h, -0.61) - ls(0.37 - h, -0.61)) / (2 * h),
              (ls(0.37, -0.61 + h) - ls(0.37, -0.61 - h)) / (2 * h)]
        assert g.tolist() == pytest.approx(fd, rel=1e-5, abs=1e-5), name


def test_ackley_gradient_is_finite_at_its_minimum():
    p = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(get("ackley").f(p), p)
    assert torch.isfinite(g).all() and float(g.abs().max()) < 1e-10


def test_quadratic_condition_number_and_rotation():
    for kappa, angle in [(100, 0), (100, 30), (10, 45), (1e4, -60)]:
        ls = get("quadratic", kappa=kappa, angle=angle)
        p = torch.tensor([0.2, -0.4], dtype=torch.float64)
        hess = torch.autograd.functional.hessian(ls.f, p)
        eig = torch.linalg.eigvalsh(hess)
        assert eig.tolist() == pytest.approx([1.0, kappa], rel=1e-12)
        # the stiff eigenvector points at angle + 90 degrees
        stiff = torch.linalg.eigh(hess).eigenvectors[:, 1]
        a = math.radians(angle + 90)
        assert abs(float(stiff @ torch.tensor([math.cos(a), math.sin(a)], dtype=torch.float64))) == pytest.approx(1.0)
        assert ls.params == {"kappa": float(kappa), "angle": float(angle)}
    axis = get("quadratic", kappa=100)
    assert axis(1.0, 0.0) == 0.5 and axis(0.0, 1.0) == 50.0
    assert LANDSCAPES["quadratic"].params["kappa"] == 100
    assert LANDSCAPES["rotated-quadratic"].params == {"kappa": 100.0, "angle": 45.0}
    # rotating the start with the valley keeps the starting loss
    assert get("rotated-quadratic")(*get("rotated-quadratic").start) == pytest.approx(axis(*axis.start))
    assert set(parameters("quadratic")) == {"kappa", "angle"} and parameters("rosenbrock") == {}


def test_saddle_has_a_saddle_point_between_its_two_minima():
    ls = get("saddle")
    p = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(ls.f(p), p)
    assert g.abs().max() == 0
    eig = torch.linalg.eigvalsh(torch.autograd.functional.hessian(ls.f, torch.zeros(2, dtype=torch.float64)))
    assert eig[0] < 0 < eig[1]
    assert ls.start[1] == 0.0  # starts on the ridge: gradient descent alone stays on it


def test_bad_names_and_parameters_raise_value_errors_that_say_what_is_allowed():
    with pytest.raises(ValueError, match="unknown landscape 'nope'; allowed: rosenbrock"):
        get("nope")
    with pytest.raises(ValueError, match="takes no parameters"):
        get("rosenbrock", kappa=3)
    with pytest.raises(ValueError, match="unknown parameter 'kapa'; allowed: kappa, angle"):
        get("quadratic", kapa=3)
    with pytest.raises(ValueError, match=r"invalid kappa=0.5; allowed: a number from 1 to 1e\+06"):
        get("quadratic", kappa=0.5)
    with pytest.raises(ValueError, match="invalid kappa=nan"):
        get("quadratic", kappa=float("nan"))
    with pytest.raises(ValueError, match="start must be finite"):
        get("rosenbrock", start=(float("inf"), 0))
    assert get("rosenbrock", start=(0.5, 0.5)).start == (0.5, 0.5)


def test_grid_is_oriented_and_safe():
    ls = get("rosenbrock")
    xs, ys, Z = ls.grid(50)
    assert xs.shape == (50,) and ys.shape == (50,) and Z.shape == (50, 50)
    assert Z[7, 3] == pytest.approx(ls(xs[3], ys[7]))
    assert np.isfinite(Z).all()
    c = ls.colour_values(Z)
    assert np.isfinite(c).all() and c.min() < c.max()
    # overflow on a huge domain becomes NaN, not inf
    _, _, Zbig = ls.grid(5, domain=((-1e100, 1e100), (-1e100, 1e100)))
    assert not np.isinf(Zbig).any() and np.isnan(Zbig).any()
    assert LANDSCAPES["rastrigin"].colour_values(Z) is not None
    with pytest.raises(ValueError, match="grid size"):
        ls.grid(1)


def test_to_dict_round_trips_the_recipe():
    from landscapes import from_recipe
    ls = get("quadratic", kappa=30, angle=20, start=(1.0, -1.0))
    again = from_recipe(ls.to_dict()["recipe"])
    assert again.params == ls.params and again.start == ls.start
    assert again(0.3, 0.4) == ls(0.3, 0.4)
