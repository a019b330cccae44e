"""Sweeps, learning-rate tuning and fair comparisons between optimizers on a landscape.

- :func:`sweep`: one hyperparameter (or ``seed_budget``) over a list of values, side by side.
- :func:`tune_lr`: the best lr on a grid, by the median final loss over seeds.
- :func:`match_path_length`: the paper's rule for its toy figures (AdaMeZO, Appendix B.5): set Adam's
  lr, then tune each zeroth-order optimizer's lr so that its trajectory is as long as Adam's (or
  ``ratio`` times as long). Solved by Brent's method on log lr.
- :func:`equal_budget` / :func:`run_budget`: steps per optimizer for one forward-pass budget (Adam 1
  per step, MeZO/AdaMeZO/ZO-Adam 2, HiZOO 3), and the runs themselves.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from optimizers import OPTIMIZERS

from .engine import Repeats, Trajectory, resolve, run_repeats, run_trajectory
from .landscape import Landscape, Point


# --------------------------------------------------------------------------------- sweeps
@dataclass
class Sweep:
    """Results of one optimizer with ``param`` set to each of ``values`` (one :class:`Repeats` each)."""

    optimizer: str
    param: str
    values: list[Any]
    results: list[Repeats]

    def median_finals(self) -> list[float]:
        return [r.median_final for r in self.results]

    def best(self) -> tuple[Any, Repeats]:
        """The value with the lowest median final loss (the first one on ties) and its results."""
        i = int(np.argmin(self.median_finals()))
        return self.values[i], self.results[i]


def sweep(
    landscape: Landscape | str,
    name: str,
    param: str,
    values: Sequence[Any],
    steps: int = 500,
    hyper: Mapping[str, Any] | None = None,
    seeds: Iterable[int] = (0,),
    start: Point | None = None,
    seed_budget: int | None = None,
    quantiles: tuple[float, float] = (0.1, 0.9),
    max_loss: float | None = None,
) -> Sweep:
    """Run ``name`` with ``param`` (a hyperparameter name, or ``"seed_budget"``) set to each value.

    Everything else is shared: ``hyper`` (which must not also set ``param``), ``seeds``, ``start``,
    ``max_loss`` (see :func:`run_trajectory`).
    """
    ls = resolve(landscape)
    values = list(values)
    if not values:
        raise ValueError("sweep needs at least one value")
    hyper = dict(hyper or {})
    if param in hyper:
        raise ValueError(f"{param!r} is swept; do not also set it in hyper")
    seeds = list(seeds)
    results = []
    for value in values:
        if param == "seed_budget":
            results.append(run_repeats(ls, name, steps, hyper, seeds, start, value, quantiles, max_loss))
        else:
            results.append(run_repeats(ls, name, steps, hyper | {param: value}, seeds, start, seed_budget,
                                       quantiles, max_loss))
    return Sweep(name, param, values, results)


def log_grid(low: float, high: float, count: int) -> list[float]:
    """``count`` values evenly spaced in log from ``low`` to ``high`` (inclusive)."""
    if not (0 < low < high) or count < 2:
        raise ValueError(f"log_grid needs 0 < low < high and count >= 2, got {low}, {high}, {count}")
    return [float(v) for v in np.geomspace(low, high, count)]


def tune_lr(
    landscape: Landscape | str,
    name: str,
    lrs: Sequence[float],
    steps: int = 500,
    hyper: Mapping[str, Any] | None = None,
    seeds: Iterable[int] = range(8),
    start: Point | None = None,
    seed_budget: int | None = None,
    max_loss: float | None = None,
) -> Sweep:
    """A sweep over ``lr``; ``.best()`` is the lr with the lowest median final loss over ``seeds``.

    ``max_loss`` defaults to 1e6 × max(1, |f(start)|): a run whose loss grows past it counts as
    diverged (final loss ``inf``) and stops early, which saves the time of hopeless lrs.
    """
    ls = resolve(landscape)
    if max_loss is None:
        origin = ls.start if start is None else start
        max_loss = 1e6 * max(1.0, abs(ls(*origin)))
    return sweep(ls, name, "lr", sorted(float(v) for v in lrs), steps, hyper, seeds, start, seed_budget,
                 max_loss=max_loss)


# --------------------------------------------------------------------------------- path-length matching
PATH_TOLERANCE = 0.05  # a match within 5 % of the target length counts as equal


@dataclass
class PathMatch:
    """An lr and the median path length it gives over ``seeds``, against ``target``.

    ``reached`` says whether the length is within ``tolerance`` (relative) of the target; when it is
    not, ``lr`` is the closest that the search found and ``path_length`` what it gives.
    """

    optimizer: str
    lr: float
    path_length: float
    target: float
    seeds: list[int]
    evaluations: int
    tolerance: float = PATH_TOLERANCE

    @property
    def relative_error(self) -> float:
        """path_length / target − 1 (inf for a diverging run)."""
        return self.path_length / self.target - 1 if math.isfinite(self.path_length) else math.inf

    @property
    def reached(self) -> bool:
        return abs(self.relative_error) <= self.tolerance

    def describe(self) -> str:
        """One sentence with both lengths, e.g. for an error message or a caption."""
        title = OPTIMIZERS[self.optimizer].title if self.optimizer in OPTIMIZERS else self.optimizer
        verdict = "within" if self.reached else "not within"
        return (f"{title} at lr {self.lr:.4g}: path length {self.path_length:.4g} against the target "
                f"{self.target:.4g} ({self.relative_error:+.1%}, {verdict} the {self.tolerance:.0%} tolerance)")


class PathLengthError(ValueError):
    """No lr in the bounds gives the target path length (within the tolerance). ``match`` is the closest."""

    def __init__(self, message: str, match: PathMatch | None) -> None:
        super().__init__(message)
        self.match = match


def _median_length(ls: Landscape, name: str, lr: float, steps: int, hyper: dict[str, Any], seeds: list[int],
                   start: Point | None, seed_budget: int | None) -> float:
    lengths = []
    for seed in seeds:
        tr = run_trajectory(ls, name, steps, hyper | {"lr": lr}, start, seed, seed_budget)
        lengths.append(math.inf if tr.diverged_at is not None else tr.path_length)
    return float(np.median(lengths))


def match_path_length(
    landscape: Landscape | str,
    name: str,
    target_length: float,
    steps: int = 500,
    hyper: Mapping[str, Any] | None = None,
    seeds: Iterable[int] = (0,),
    start: Point | None = None,
    seed_budget: int | None = None,
    lr_bounds: tuple[float, float] = (1e-7, 10.0),
    grid: int = 17,
    rtol: float = 1e-3,
    tolerance: float = PATH_TOLERANCE,
    strict: bool = True,
) -> PathMatch:
    """Solve for the lr at which the median path length of ``name`` equals ``target_length``.

    Path length grows with lr (a run that diverges counts as infinitely long). The lr is bracketed by
    scanning ``grid`` log-spaced values over ``lr_bounds`` for the first change of sign of
    ``log(length) − log(target)``, then refined by Brent's method on log lr to relative ``rtol``.
    The result is the lr, among all those run, whose length is closest to the target.

    The length need not be continuous in lr (a ZO path can jump from short to long, or to a diverging
    run), so the target may be out of reach. If the closest length is not within ``tolerance``
    (relative) of the target, ``strict=True`` raises :class:`PathLengthError` (a ``ValueError``) with
    both lengths in its message and the closest :class:`PathMatch` as ``.match``; ``strict=False``
    returns that closest match, whose ``reached`` is False. A mismatch is never returned silently.
    """
    ls = resolve(landscape)
    hyper = dict(hyper or {})
    if "lr" in hyper:
        raise ValueError("match_path_length solves for lr; do not set it in hyper")
    if not (isinstance(target_length, (int, float)) and math.isfinite(target_length) and target_length > 0):
        raise ValueError(f"target_length must be a positive finite number, got {target_length!r}")
    if not (isinstance(tolerance, (int, float)) and 0 <= tolerance < 1):
        raise ValueError(f"tolerance must be a number >= 0 and < 1 (relative), got {tolerance!r}")
    low, high = lr_bounds
    if not 0 < low < high:
        raise ValueError(f"lr_bounds must satisfy 0 < low < high, got {lr_bounds!r}")
    seeds = list(seeds)
    title = OPTIMIZERS[name].title
    log_target = math.log(target_length)
    calls = 0
    cache: dict[float, float] = {}

    def gap(log_lr: float) -> float:
        nonlocal calls
        if log_lr not in cache:
            calls += 1
            length = _median_length(ls, name, math.exp(log_lr), steps, hyper, seeds, start, seed_budget)
            cache[log_lr] = (math.inf if not math.isfinite(length) else
                             (-math.inf if length <= 0 else math.log(length) - log_target))
        return cache[log_lr]

    def closest() -> PathMatch | None:
        finite = [(abs(g), s) for s, g in cache.items() if math.isfinite(g)]
        if not finite:
            return None
        s = min(finite)[1]
        return PathMatch(name, math.exp(s), math.exp(cache[s] + log_target), float(target_length), seeds, calls,
                         float(tolerance))

    def out_of_reach(why: str) -> PathMatch:
        best = closest()
        if best is not None and not strict:
            return best
        near = f"; the closest is {best.describe()}" if best is not None else ""
        raise PathLengthError(f"{why}{near}. Widen lr_bounds or change the target.", best)

    points = np.linspace(math.log(low), math.log(high), grid)
    values = [gap(float(s)) for s in points]
    bracket = None
    for (s0, g0), (s1, g1) in zip(zip(points, values), zip(points[1:], values[1:])):
        if g0 == 0:
            bracket = (s0, s0)
            break
        if g0 < 0 <= g1:
            bracket = (float(s0), float(s1))
            break
    if bracket is None:
        finite = [math.exp(g + log_target) for g in values if math.isfinite(g)]
        span = f"from {min(finite):.4g} to {max(finite):.4g}" if finite else "none finite (every run diverged)"
        return out_of_reach(f"no lr in [{low:g}, {high:g}] gives {title} a path length of {target_length:.4g} "
                            f"on {ls.title}; the lengths found range {span}")
    s0, s1 = bracket
    if s0 != s1:
        g1 = gap(s1)
        if math.isinf(g1):
            # Brent needs finite values: walk the upper end down until the run stops diverging.
            lo_s, hi_s = s0, s1
            for _ in range(30):
                mid = (lo_s + hi_s) / 2
                g = gap(mid)
                if g < 0:
                    lo_s = mid
                elif math.isfinite(g):
                    hi_s = mid
                    break
                else:
                    hi_s = mid
            s0, s1 = lo_s, hi_s
        if not math.isfinite(gap(s1)) or gap(s0) >= 0:
            return out_of_reach(f"{title} jumps from a path shorter than {target_length:.4g} to a diverging run "
                                f"between lr {math.exp(s0):.4g} and {math.exp(s1):.4g}; no lr matches the target "
                                "length")
        from scipy.optimize import brentq  # here: importing scipy takes ~0.3–0.6 s, which the app's first page saves

        brentq(gap, s0, s1, xtol=rtol, rtol=1e-12, maxiter=100)
    best = closest()
    if not best.reached:
        return out_of_reach(f"{title}'s path length jumps across the target {target_length:.4g} on {ls.title} "
                            "(it is not continuous in lr here)")
    return best


def match_to_reference(
    landscape: Landscape | str,
    names: Sequence[str],
    steps: int,
    reference: str = "adam",
    reference_hyper: Mapping[str, Any] | None = None,
    hypers: Mapping[str, Mapping[str, Any]] | None = None,
    ratio: float = 1.0,
    seeds: Iterable[int] = (0,),
    start: Point | None = None,
    seed_budget: int | None = None,
    lr_bounds: tuple[float, float] = (1e-7, 10.0),
    tolerance: float = PATH_TOLERANCE,
    strict: bool = True,
) -> dict[str, PathMatch]:
    """The paper's toy-figure rule: run ``reference`` (Adam) with its lr, then match every other
    optimizer's path length to ``ratio`` × Adam's (the paper allows zeroth-order paths a bit longer).

    Returns name -> :class:`PathMatch`; the reference's own entry has its given lr and length.
    ``tolerance`` and ``strict`` are :func:`match_path_length`'s.
    """
    ls = resolve(landscape)
    seeds = list(seeds)
    ref_hyper = dict(reference_hyper or {})
    ref_lr = float(ref_hyper.pop("lr", OPTIMIZERS[reference].specs["lr"].default))
    ref_length = _median_length(ls, reference, ref_lr, steps, ref_hyper, seeds, start, seed_budget)
    if not math.isfinite(ref_length) or ref_length <= 0:
        raise ValueError(f"the reference {reference} run diverged or did not move; choose another lr")
    out = {reference: PathMatch(reference, ref_lr, ref_length, ref_length, seeds, 1)}
    hypers = hypers or {}
    for name in names:
        if name == reference:
            continue
        out[name] = match_path_length(ls, name, ratio * ref_length, steps, dict(hypers.get(name, {})), seeds,
                                      start, seed_budget, lr_bounds, tolerance=tolerance, strict=strict)
    return out


# --------------------------------------------------------------------------------- equal budgets
def forward_passes_per_step(name: str, hyper: Mapping[str, Any] | None = None) -> int:
    """Closure calls per step of optimizer ``name`` with ``hyper`` (the registry's figure: 2q for q
    directions, plus the method's extra passes; 1 for first-order methods)."""
    entry = OPTIMIZERS.get(name)
    if entry is None:
        raise ValueError(f"unknown optimizer {name!r}; allowed: {', '.join(OPTIMIZERS)}")
    return entry.forward_passes(hyper)


def equal_budget(budget: int, names: Iterable[str],
                 hypers: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, int]:
    """Steps each optimizer gets from ``budget`` forward passes: ``budget // passes_per_step`` (with each
    optimizer's ``hypers``, which may set several directions a step)."""
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 1:
        raise ValueError(f"budget must be a positive number of forward passes, got {budget!r}")
    hypers = hypers or {}
    return {name: int(budget) // forward_passes_per_step(name, hypers.get(name)) for name in names}


def run_budget(
    landscape: Landscape | str,
    names: Sequence[str],
    budget: int,
    hypers: Mapping[str, Mapping[str, Any]] | None = None,
    seed: int = 0,
    seed_budget: int | None = None,
    start: Point | None = None,
) -> dict[str, Trajectory]:
    """One run per optimizer, each with as many steps as ``budget`` forward passes allow."""
    ls = resolve(landscape)
    hypers = hypers or {}
    return {name: run_trajectory(ls, name, steps, dict(hypers.get(name, {})), start, seed, seed_budget)
            for name, steps in equal_budget(budget, names, hypers).items()}
