"""The :class:`Landscape` record: a 2-D loss surface with everything needed to show and score it.

A landscape's ``f`` maps a float64 tensor of shape ``[..., 2]`` (the last axis is (x, y)) to a tensor
of shape ``[...]``, built from torch operations only, so that it is differentiable by autograd (first-
order Adam calls backward through it) and evaluates a whole grid or a whole trajectory in one call.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

import numpy as np
import torch

Domain = tuple[tuple[float, float], tuple[float, float]]
Point = tuple[float, float]
Minimum = tuple[float, float, float]


@dataclass(frozen=True, eq=False)
class Landscape:
    """A 2-D test function.

    Attributes:
        name: short registry name ("rosenbrock", "quadratic", "custom", ...).
        title: human-readable name, with parameters where there are any.
        formula: the function in LaTeX (no surrounding ``$``).
        f: torch function, ``[..., 2]`` float64 -> ``[...]``, differentiable.
        domain: plot domain ``((x0, x1), (y0, y1))``.
        minima: known minima ``(x, y, f)``: every global minimum (all four of Himmelblau's, both of
            the six-hump camel's); empty when the function has none (a plain saddle).
        start: the default starting point ``(x, y)``.
        log_scale: whether contours and colours should use a log scale of ``f − f_min``.
        params: the parameters the landscape was built with (e.g. ``kappa``, ``angle``).
        local_minima: further known local minima ``(x, y, f)`` worth marking on a plot.
        notes: one or two sentences on what the landscape is good for showing.
        recipe: how to rebuild it (see :func:`landscapes.from_recipe`).
    """

    name: str
    title: str
    formula: str
    f: Callable[[torch.Tensor], torch.Tensor]
    domain: Domain
    minima: tuple[Minimum, ...]
    start: Point
    log_scale: bool
    params: Mapping[str, Any] = field(default_factory=dict)
    local_minima: tuple[Minimum, ...] = ()
    notes: str = ""
    recipe: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", MappingProxyType(dict(self.params)))
        object.__setattr__(self, "recipe", MappingProxyType(dict(self.recipe)))
        object.__setattr__(self, "minima", tuple(tuple(float(v) for v in m) for m in self.minima))
        object.__setattr__(self, "local_minima", tuple(tuple(float(v) for v in m) for m in self.local_minima))
        object.__setattr__(self, "start", (float(self.start[0]), float(self.start[1])))
        (x0, x1), (y0, y1) = self.domain
        object.__setattr__(self, "domain", ((float(x0), float(x1)), (float(y0), float(y1))))

    def __repr__(self) -> str:
        return f"Landscape({self.name!r}, title={self.title!r})"

    # ----------------------------------------------------------------------------- evaluation
    def __call__(self, x: float, y: float) -> float:
        """f(x, y) as a Python float (non-finite values are returned as they are)."""
        with torch.no_grad():
            return float(self.f(torch.tensor([x, y], dtype=torch.float64)))

    def values(self, xy: Any) -> np.ndarray:
        """f at an array of points ``[..., 2]`` (numpy or torch), as a numpy float64 array."""
        t = torch.as_tensor(np.asarray(xy, dtype=np.float64))
        with torch.no_grad():
            return self.f(t).detach().numpy().astype(np.float64, copy=False)

    @property
    def f_min(self) -> float | None:
        """The lowest known value (the global minimum), or ``None`` if none is known."""
        return min(m[2] for m in self.minima) if self.minima else None

    def grid(self, n: int = 200, domain: Domain | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Evaluate f on an ``n × n`` grid over ``domain`` (default: the plot domain).

        Returns ``xs [n]``, ``ys [n]`` and ``Z [n, n]`` with ``Z[i, j] = f(xs[j], ys[i])`` (rows are y,
        as contour plots expect). Non-finite values (overflow, log of a negative number) are NaN.
        """
        n = int(n)
        if not 2 <= n <= 4000:
            raise ValueError(f"grid size n={n} is out of range; allowed: 2 to 4000")
        (x0, x1), (y0, y1) = self.domain if domain is None else domain
        xs = np.linspace(x0, x1, n)
        ys = np.linspace(y0, y1, n)
        pts = torch.from_numpy(np.stack(np.meshgrid(xs, ys), axis=-1))
        with torch.no_grad(), np.errstate(all="ignore"):
            z = self.f(pts)
            z = torch.broadcast_to(torch.as_tensor(z, dtype=torch.float64), pts.shape[:-1])
            Z = z.detach().numpy().astype(np.float64, copy=True)
        Z[~np.isfinite(Z)] = np.nan
        return xs, ys, Z

    def colour_values(self, Z: np.ndarray, log: bool | None = None) -> np.ndarray:
        """Values to colour or contour by: ``Z`` itself, or ``log10(Z − f_min + floor)`` on a log scale.

        ``f_min`` is the lowest of the known minimum and the grid's own minimum, so the argument of the
        log is always positive; ``floor`` is 1e-6 of the grid's range (at least 1e-12). NaN stays NaN.
        """
        log = self.log_scale if log is None else log
        Z = np.asarray(Z, dtype=np.float64)
        if not log or not np.isfinite(Z).any():
            return Z
        lowest = float(np.nanmin(Z))
        if self.f_min is not None:
            lowest = min(lowest, self.f_min)
        spread = float(np.nanmax(Z)) - lowest
        floor = max(spread * 1e-6, 1e-12)
        with np.errstate(all="ignore"):
            return np.log10(Z - lowest + floor)

    # ----------------------------------------------------------------------------- geometry
    def nearest_minimum(self, xy: Point) -> tuple[Minimum | None, float]:
        """The known minimum nearest to ``xy`` and the Euclidean distance to it (``(None, nan)`` if none)."""
        if not self.minima:
            return None, math.nan
        x, y = float(xy[0]), float(xy[1])
        best = min(self.minima, key=lambda m: math.hypot(m[0] - x, m[1] - y))
        return best, math.hypot(best[0] - x, best[1] - y)

    def contains(self, xy: Point) -> bool:
        (x0, x1), (y0, y1) = self.domain
        return x0 <= xy[0] <= x1 and y0 <= xy[1] <= y1

    def with_start(self, start: Point) -> Landscape:
        """The same landscape with another default start."""
        start = check_point(start, "start")
        recipe = dict(self.recipe)
        recipe["start"] = list(start)
        return replace(self, start=start, recipe=recipe)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able facts (no function): for links, run records and the app."""
        return {
            "name": self.name, "title": self.title, "formula": self.formula,
            "domain": [list(self.domain[0]), list(self.domain[1])],
            "minima": [list(m) for m in self.minima], "start": list(self.start),
            "log_scale": self.log_scale, "params": dict(self.params), "recipe": dict(self.recipe),
        }


def check_point(point: Any, what: str) -> Point:
    """``point`` as a pair of finite floats, or ``ValueError`` naming ``what``."""
    try:
        x, y = point
        x, y = float(x), float(y)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a pair of numbers (x, y), got {point!r}") from None
    if not (math.isfinite(x) and math.isfinite(y)):
        raise ValueError(f"{what} must be finite, got {point!r}")
    return x, y


def check_domain(domain: Any) -> Domain:
    """``domain`` as ``((x0, x1), (y0, y1))`` with finite bounds and x0 < x1, y0 < y1, or ``ValueError``."""
    try:
        (x0, x1), (y0, y1) = domain
        x0, x1, y0, y1 = float(x0), float(x1), float(y0), float(y1)
    except (TypeError, ValueError):
        raise ValueError(f"domain must be ((x0, x1), (y0, y1)), got {domain!r}") from None
    if not all(math.isfinite(v) for v in (x0, x1, y0, y1)):
        raise ValueError(f"domain bounds must be finite, got {domain!r}")
    if not (x0 < x1 and y0 < y1):
        raise ValueError(f"domain must have x0 < x1 and y0 < y1, got {domain!r}")
    if max(abs(x0), abs(x1), abs(y0), abs(y1)) > 1e6:
        raise ValueError(f"domain bounds must lie within ±1e6, got {domain!r}")
    return (x0, x1), (y0, y1)
