"""The catalogue of 2-D test functions: formula, torch function, domain, minima, start, colour scale.

Every function takes a float64 tensor ``[..., 2]`` and returns ``[...]``, with torch operations only
(differentiable by autograd). Minima are the published ones, to float64 precision; a test checks each
one with ``scipy.optimize`` from several starts. References: Surjanovic and Bingham, *Virtual Library
of Simulation Experiments* (test functions); Jamil and Yang, "A literature survey of benchmark
functions for global optimisation problems" (2013).

Parametrized landscapes take keyword parameters through :func:`get`::

    get("quadratic", kappa=100, angle=0)      # ½(u² + κ v²), (u, v) = (x, y) rotated by −angle degrees
    get("rotated-quadratic", kappa=100)       # the same with angle = 45 by default

``LANDSCAPES`` holds every landscape with its default parameters.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from .landscape import Landscape, Point, check_point

Tensor = torch.Tensor
_SQRT_FLOOR = 1e-30  # keeps Ackley's sqrt differentiable at the origin (changes f(0, 0) by ~4e-15)


# --------------------------------------------------------------------------------- functions
def rosenbrock(p: Tensor) -> Tensor:
    x, y = p[..., 0], p[..., 1]
    return (1 - x) ** 2 + 100 * (y - x * x) ** 2


def beale(p: Tensor) -> Tensor:
    x, y = p[..., 0], p[..., 1]
    return (1.5 - x + x * y) ** 2 + (2.25 - x + x * y**2) ** 2 + (2.625 - x + x * y**3) ** 2


def himmelblau(p: Tensor) -> Tensor:
    x, y = p[..., 0], p[..., 1]
    return (x * x + y - 11) ** 2 + (x + y * y - 7) ** 2


def booth(p: Tensor) -> Tensor:
    x, y = p[..., 0], p[..., 1]
    return (x + 2 * y - 7) ** 2 + (2 * x + y - 5) ** 2


def rastrigin(p: Tensor) -> Tensor:
    x, y = p[..., 0], p[..., 1]
    two_pi = 2 * math.pi
    return 20 + x * x - 10 * torch.cos(two_pi * x) + y * y - 10 * torch.cos(two_pi * y)


def ackley(p: Tensor) -> Tensor:
    x, y = p[..., 0], p[..., 1]
    two_pi = 2 * math.pi
    r = torch.sqrt(0.5 * (x * x + y * y) + _SQRT_FLOOR)
    return (-20 * torch.exp(-0.2 * r) - torch.exp(0.5 * (torch.cos(two_pi * x) + torch.cos(two_pi * y)))
            + math.e + 20)


def six_hump_camel(p: Tensor) -> Tensor:
    x, y = p[..., 0], p[..., 1]
    x2, y2 = x * x, y * y
    return (4 - 2.1 * x2 + x2 * x2 / 3) * x2 + x * y + (-4 + 4 * y2) * y2


def goldstein_price(p: Tensor) -> Tensor:
    x, y = p[..., 0], p[..., 1]
    a = 1 + (x + y + 1) ** 2 * (19 - 14 * x + 3 * x * x - 14 * y + 6 * x * y + 3 * y * y)
    b = 30 + (2 * x - 3 * y) ** 2 * (18 - 32 * x + 12 * x * x + 48 * y - 36 * x * y + 27 * y * y)
    return a * b


def styblinski_tang(p: Tensor) -> Tensor:
    return 0.5 * (p**4 - 16 * p * p + 5 * p).sum(-1)


def mccormick(p: Tensor) -> Tensor:
    x, y = p[..., 0], p[..., 1]
    return torch.sin(x + y) + (x - y) ** 2 - 1.5 * x + 2.5 * y + 1


def saddle(p: Tensor) -> Tensor:
    x, y = p[..., 0], p[..., 1]
    y2 = y * y
    return x * x + 0.25 * y2 * y2 - 0.5 * y2


def quadratic_function(kappa: float, angle: float) -> Callable[[Tensor], Tensor]:
    """½(u² + κ v²) with u = cos(a) x + sin(a) y, v = −sin(a) x + cos(a) y, a = angle in degrees.

    The Hessian has eigenvalues 1 and κ (condition number κ); its stiff axis is the direction at
    ``angle + 90`` degrees. ``angle = 0`` is axis-aligned: ½(x² + κ y²).
    """
    a = math.radians(angle)
    c, s = math.cos(a), math.sin(a)
    if angle % 180 == 0:  # exactly axis-aligned, no round-off from the rotation
        c, s = (1.0 if angle % 360 == 0 else -1.0), 0.0

    def quadratic(p: Tensor) -> Tensor:
        x, y = p[..., 0], p[..., 1]
        u = c * x + s * y
        v = c * y - s * x
        return 0.5 * (u * u + kappa * v * v)

    return quadratic


# --------------------------------------------------------------------------------- builders
@dataclass(frozen=True)
class LandscapeParam:
    """A numeric parameter of a parametrized landscape, for validation and UI sliders."""

    name: str
    default: float
    low: float
    high: float
    log: bool = False
    help: str = ""

    def validate(self, value: Any, owner: str) -> float:
        try:
            v = float(value)
        except (TypeError, ValueError):
            v = math.nan
        if isinstance(value, bool) or not math.isfinite(v) or not self.low <= v <= self.high:
            raise ValueError(f"{owner}: invalid {self.name}={value!r}; allowed: a number from "
                             f"{self.low:g} to {self.high:g}")
        return v


_KAPPA = LandscapeParam("kappa", 100.0, 1.0, 1e6, log=True,
                        help="Condition number κ: the ratio of the largest to the smallest curvature.")
_ANGLE = LandscapeParam("angle", 0.0, -360.0, 360.0,
                        help="Rotation of the valley in degrees (0: axis-aligned).")
_ROTATED_ANGLE = LandscapeParam("angle", 45.0, -360.0, 360.0, help=_ANGLE.help)


def _quadratic(kappa: float, angle: float) -> dict[str, Any]:
    kappa_text = f"{kappa:g}"
    if angle == 0:
        formula = rf"\tfrac12\left(x^2 + {kappa_text}\,y^2\right)"
        title = f"Ill-conditioned quadratic (κ = {kappa_text})"
    else:
        formula = (rf"\tfrac12\left(u^2 + {kappa_text}\,v^2\right),\ "
                   rf"\begin{{pmatrix}}u\\v\end{{pmatrix}} = R_{{-{angle:g}^\circ}}\begin{{pmatrix}}x\\y\end{{pmatrix}}")
        title = f"Rotated ill-conditioned quadratic (κ = {kappa_text}, {angle:g}°)"
    return dict(
        title=title, formula=formula, f=quadratic_function(kappa, angle),
        domain=((-3.0, 3.0), (-3.0, 3.0)), minima=[(0.0, 0.0, 0.0)], start=_rotate((-2.5, 1.5), angle),
        log_scale=True,
        notes="Curvatures 1 and κ: one lr cannot suit both directions, so plain (ZO-)SGD zig-zags or crawls; "
              "per-coordinate adaptivity helps only where the stiff axis is a coordinate axis.",
    )


def _rotate(point: Point, angle: float) -> Point:
    a = math.radians(angle)
    x, y = point
    return (round(math.cos(a) * x - math.sin(a) * y, 12), round(math.sin(a) * x + math.cos(a) * y, 12))


_TWO_PI_LATEX = r"2\pi"

# name -> (builder(**params) -> Landscape fields, parameter specs)
_FIXED: dict[str, dict[str, Any]] = {
    "rosenbrock": dict(
        title="Rosenbrock", formula=r"(1 - x)^2 + 100\,(y - x^2)^2", f=rosenbrock,
        domain=((-2.0, 2.0), (-1.0, 3.0)), minima=[(1.0, 1.0, 0.0)], start=(-1.5, 2.0), log_scale=True,
        notes="A curved, flat-bottomed valley: easy to enter, slow to follow to (1, 1)."),
    "beale": dict(
        title="Beale", formula=r"(1.5 - x + xy)^2 + (2.25 - x + xy^2)^2 + (2.625 - x + xy^3)^2", f=beale,
        domain=((-4.5, 4.5), (-4.5, 4.5)), minima=[(3.0, 0.5, 0.0)], start=(-1.0, -1.5), log_scale=True,
        notes="Sharp ridges and flat plateaus; values span many orders of magnitude."),
    "himmelblau": dict(
        title="Himmelblau", formula=r"(x^2 + y - 11)^2 + (x + y^2 - 7)^2", f=himmelblau,
        domain=((-5.0, 5.0), (-5.0, 5.0)),
        minima=[(3.0, 2.0, 0.0), (-2.805118086952745, 3.131312518250573, 0.0),
                (-3.7793102533777465, -3.2831859912861696, 0.0), (3.5844283403304917, -1.8481265269644036, 0.0)],
        start=(-0.5, 0.5), log_scale=True,
        notes="Four equal global minima: which one a run finds depends on the optimizer and the seed."),
    "booth": dict(
        title="Booth", formula=r"(x + 2y - 7)^2 + (2x + y - 5)^2", f=booth,
        domain=((-10.0, 10.0), (-10.0, 10.0)), minima=[(1.0, 3.0, 0.0)], start=(-8.0, -6.0), log_scale=True,
        notes="A mildly ill-conditioned quadratic (condition number 9), rotated by 45 degrees."),
    "rastrigin": dict(
        title="Rastrigin", formula=rf"20 + x^2 - 10\cos({_TWO_PI_LATEX} x) + y^2 - 10\cos({_TWO_PI_LATEX} y)",
        f=rastrigin, domain=((-5.12, 5.12), (-5.12, 5.12)), minima=[(0.0, 0.0, 0.0)], start=(-2.7, 3.3),
        log_scale=False,
        notes="A bowl covered with a regular grid of local minima; noise from random directions can help hop them."),
    "ackley": dict(
        title="Ackley",
        formula=(r"-20\,e^{-0.2\sqrt{\frac{x^2 + y^2}{2}}} - e^{\frac{\cos(2\pi x) + \cos(2\pi y)}{2}} + e + 20"),
        f=ackley, domain=((-5.0, 5.0), (-5.0, 5.0)), minima=[(0.0, 0.0, 0.0)], start=(3.2, -2.6),
        log_scale=False,
        notes="Nearly flat outside, many small local minima, one deep narrow funnel at the origin."),
    "six-hump-camel": dict(
        title="Six-hump camel", formula=r"\left(4 - 2.1x^2 + \tfrac{x^4}{3}\right)x^2 + xy + (4y^2 - 4)\,y^2",
        f=six_hump_camel, domain=((-2.5, 2.5), (-1.5, 1.5)),
        minima=[(0.08984201310031807, -0.7126564030207396, -1.0316284534898774),
                (-0.08984201310031807, 0.7126564030207396, -1.0316284534898774)],
        local_minima=[(-1.7036067133, 0.7960835652, -0.2154638244), (1.7036067133, -0.7960835652, -0.2154638244),
                      (1.6071047194, 0.5686514549, 2.1042503103), (-1.6071047194, -0.5686514549, 2.1042503103)],
        start=(-1.8, -1.2), log_scale=False,
        notes="Six humps: two global minima, four local ones."),
    "goldstein-price": dict(
        title="Goldstein-Price",
        formula=(r"\left[1 + (x + y + 1)^2(19 - 14x + 3x^2 - 14y + 6xy + 3y^2)\right]"
                 r"\left[30 + (2x - 3y)^2(18 - 32x + 12x^2 + 48y - 36xy + 27y^2)\right]"),
        f=goldstein_price, domain=((-2.0, 2.0), (-2.0, 2.0)), minima=[(0.0, -1.0, 3.0)],
        local_minima=[(-0.6, -0.4, 30.0), (1.8, 0.2, 84.0), (1.2, 0.8, 840.0)],
        start=(-1.5, 1.5), log_scale=True,
        notes="Values from 3 to about 1e6 in a small square, with three local minima."),
    "styblinski-tang": dict(
        title="Styblinski-Tang", formula=r"\tfrac12\left(x^4 - 16x^2 + 5x + y^4 - 16y^2 + 5y\right)",
        f=styblinski_tang, domain=((-5.0, 5.0), (-5.0, 5.0)),
        minima=[(-2.9035340277711783, -2.9035340277711783, -78.33233140754282)],
        local_minima=[(2.7468027709908376, 2.7468027709908376, -50.058893310567896),
                      (2.7468027709908376, -2.9035340277711783, -64.19561235905537),
                      (-2.9035340277711783, 2.7468027709908376, -64.19561235905537)],
        start=(0.5, 4.5), log_scale=False,
        notes="Four basins of different depths; from most starts the nearest basin is not the deepest."),
    "mccormick": dict(
        title="McCormick", formula=r"\sin(x + y) + (x - y)^2 - 1.5x + 2.5y + 1", f=mccormick,
        domain=((-1.5, 4.0), (-3.0, 4.0)),
        minima=[(0.5 - math.pi / 3, -0.5 - math.pi / 3, -math.sqrt(3) / 2 - math.pi / 3)],
        start=(3.5, 3.5), log_scale=False,
        notes="A tilted valley with a gentle sinusoidal bend."),
    "saddle": dict(
        title="Saddle with two minima", formula=r"x^2 + \tfrac14 y^4 - \tfrac12 y^2", f=saddle,
        domain=((-2.0, 2.0), (-2.0, 2.0)), minima=[(0.0, -1.0, -0.25), (0.0, 1.0, -0.25)],
        start=(-1.8, 0.0), log_scale=False,
        notes="A saddle point at the origin between two minima. Started on the ridge y = 0, gradient "
              "descent converges to the saddle; random directions push zeroth-order methods off it."),
}

_PARAMETRIZED: dict[str, tuple[Callable[..., dict[str, Any]], dict[str, LandscapeParam]]] = {
    "quadratic": (_quadratic, {"kappa": _KAPPA, "angle": _ANGLE}),
    "rotated-quadratic": (_quadratic,
                          {"kappa": _KAPPA, "angle": _ROTATED_ANGLE}),
}


def names() -> list[str]:
    """All catalogue names, in display order."""
    return [*_FIXED, *_PARAMETRIZED]


def parameters(name: str) -> dict[str, LandscapeParam]:
    """The parameters ``get(name, ...)`` accepts (empty for a fixed landscape)."""
    _check_name(name)
    return dict(_PARAMETRIZED[name][1]) if name in _PARAMETRIZED else {}


def _check_name(name: Any) -> None:
    if not isinstance(name, str) or (name not in _FIXED and name not in _PARAMETRIZED):
        raise ValueError(f"unknown landscape {name!r}; allowed: {', '.join(names())}")


def get(name: str, *, start: Point | None = None, **params: Any) -> Landscape:
    """The catalogue landscape ``name``; parametrized ones take their parameters as keywords.

    ``start`` overrides the default start. Unknown names or parameters and values out of range raise
    ``ValueError`` saying what is allowed.
    """
    _check_name(name)
    if name in _FIXED:
        if params:
            raise ValueError(f"landscape {name!r} takes no parameters; got {', '.join(sorted(params))}")
        fields = dict(_FIXED[name])
        values: dict[str, float] = {}
    else:
        build, specs = _PARAMETRIZED[name]
        unknown = sorted(set(params) - set(specs))
        if unknown:
            raise ValueError(f"landscape {name!r}: unknown parameter {unknown[0]!r}; allowed: {', '.join(specs)}")
        values = {k: spec.validate(params.get(k, spec.default), name) for k, spec in specs.items()}
        fields = build(**values)
    recipe: dict[str, Any] = {"kind": "catalogue", "name": name, "params": dict(values)}
    if start is not None:
        fields["start"] = check_point(start, "start")
        recipe["start"] = list(fields["start"])
    return Landscape(name=name, params=values, recipe=recipe, **fields)


LANDSCAPES: dict[str, Landscape] = {name: get(name) for name in names()}
