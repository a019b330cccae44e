"""The trajectory engine: any registered optimizer on any landscape, recorded step by step.

``run_trajectory`` builds the parameter ``θ = (x, y)`` as a float64 ``torch.nn.Parameter``, the
optimizer from the registry (``optimizers.make_optimizer``, so every optimizer and hyperparameter of
the library is available), and steps it with the closure ``lambda: landscape.f(θ)``. It records the
position and the cumulative forward passes after every step in preallocated arrays; the loss
``f(x_t, y_t)`` at every recorded position is computed afterwards in one vectorized call (it is the
exact value at the point, not the optimizer's (L+ + L−)/2, and these evaluations are not counted as
forward passes).

Divergence: the run stops at the first non-finite value. If step ``t`` (1-based) would produce a
non-finite loss in the optimizer's closure (it raises ``NonFiniteLossError`` and restores θ), or a
non-finite position or loss, then ``diverged_at = t`` and the arrays hold the ``t`` finite points
0 … t−1.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from optimizers import NonFiniteLossError, make_optimizer

from .catalogue import get
from .landscape import Landscape, Point, check_point
from .metrics import Metrics, compute_metrics


@dataclass
class Trajectory:
    """One optimizer run on one landscape.

    ``xy [n, 2]`` positions (row 0 is the start), ``loss [n]`` f at those positions,
    ``forward_passes [n]`` cumulative closure calls of the optimizer (0 at the start), ``diverged_at``
    the step index of the first non-finite value (then ``n == diverged_at``) or ``None``.
    """

    landscape: str
    optimizer: str
    hyper: dict[str, Any]
    seed: int
    seed_budget: int | None
    steps: int
    xy: np.ndarray
    loss: np.ndarray
    forward_passes: np.ndarray
    diverged_at: int | None = None

    @property
    def n(self) -> int:
        return len(self.loss)

    @property
    def final_loss(self) -> float:
        """The loss at the last point; ``inf`` for a run that diverged."""
        return math.inf if self.diverged_at is not None else float(self.loss[-1])

    @property
    def path_length(self) -> float:
        """Σ_t ‖θ_{t+1} − θ_t‖ over the recorded points."""
        return path_length(self.xy)

    def metrics(self, landscape: Landscape, threshold: float | None = None) -> Metrics:
        """See :func:`landscapes.metrics.compute_metrics`."""
        return compute_metrics(self, landscape, threshold)


def path_length(xy: np.ndarray) -> float:
    """Total Euclidean length of a polyline ``[n, 2]``."""
    xy = np.asarray(xy, dtype=np.float64)
    if len(xy) < 2:
        return 0.0
    return float(np.hypot(*np.diff(xy, axis=0).T).sum())


def resolve(landscape: Landscape | str) -> Landscape:
    """A landscape object from itself or a catalogue name."""
    if isinstance(landscape, Landscape):
        return landscape
    if isinstance(landscape, str):
        return get(landscape)
    raise ValueError(f"landscape must be a Landscape or a catalogue name, got {type(landscape).__name__}")


def run_trajectory(
    landscape: Landscape | str,
    name: str,
    steps: int = 500,
    hyper: Mapping[str, Any] | None = None,
    start: Point | None = None,
    seed: int = 0,
    seed_budget: int | None = None,
    max_loss: float | None = None,
) -> Trajectory:
    """Run optimizer ``name`` (a registry name) for ``steps`` steps on ``landscape``.

    ``hyper`` are the optimizer's hyperparameters (registry names, e.g. ``{"lr": 0.01, "betas": (0.7,
    0.9), "horizon": 10}``); ``start`` defaults to the landscape's; ``seed`` and ``seed_budget`` go to
    the optimizer (first-order ones ignore them). Bad names or values raise ``ValueError``.

    ``max_loss`` (optional) also counts a loss above it as divergence, so that runs which blow up to
    huge but finite values stop early (useful when tuning an lr; the default only stops at non-finite
    values).
    """
    ls = resolve(landscape)
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
    steps = int(steps)
    if steps > 1_000_000:
        raise ValueError(f"steps={steps} is too many; allowed: at most 1000000")
    hyper = dict(hyper or {})
    for key in ("seed", "seed_budget"):
        if key in hyper:
            raise ValueError(f"pass {key} as its own argument of run_trajectory, not inside hyper")
    start = ls.start if start is None else check_point(start, "start")
    if max_loss is not None and (isinstance(max_loss, bool) or not isinstance(max_loss, (int, float))
                                 or math.isnan(max_loss)):
        raise ValueError(f"max_loss must be a number or None, got {max_loss!r}")
    limit = math.inf if max_loss is None else float(max_loss)

    theta = torch.nn.Parameter(torch.tensor(start, dtype=torch.float64))
    opt = make_optimizer(name, [theta], seed=seed, seed_budget=seed_budget, **hyper)
    f = ls.f

    def closure() -> torch.Tensor:
        return f(theta)

    positions = np.empty((steps + 1, 2), dtype=np.float64)
    passes = np.zeros(steps + 1, dtype=np.int64)
    flat = theta.detach().numpy()  # a view of θ's storage: the optimizers update θ in place
    positions[0] = flat
    n = steps + 1
    diverged_at: int | None = None
    step = opt.step
    if max_loss is None:
        for t in range(1, steps + 1):
            try:
                step(closure)
            except NonFiniteLossError:
                n = diverged_at = t
                break
            positions[t] = flat
            passes[t] = opt.forward_passes
    else:
        for t in range(1, steps + 1):
            try:
                value = float(step(closure))
            except NonFiniteLossError:
                n = diverged_at = t
                break
            if value > limit:
                n = diverged_at = t
                break
            positions[t] = flat
            passes[t] = opt.forward_passes

    if diverged_at is None and steps and not np.array_equal(positions[steps], theta.detach().numpy()):
        raise RuntimeError(f"{name} replaced the parameter tensor instead of updating it in place; "
                           "the engine cannot record its trajectory")
    xy_t = torch.from_numpy(positions[:n])
    with torch.no_grad():
        loss_t = torch.broadcast_to(f(xy_t), (n,))
    finite = torch.isfinite(loss_t) & torch.isfinite(xy_t).all(dim=1) & (loss_t <= limit)
    if not bool(finite.all()):
        first = int(torch.nonzero(~finite)[0, 0])
        if first == 0:
            raise ValueError(f"the loss at the start ({start[0]:.4g}, {start[1]:.4g}) is not finite "
                             f"(or above max_loss): "
                             f"{float(loss_t[0])!r}")
        n = diverged_at = first
    xy = positions[:n].copy()
    loss = loss_t[:n].detach().numpy().copy()
    return Trajectory(
        landscape=ls.name, optimizer=name, hyper=hyper, seed=int(seed), seed_budget=seed_budget, steps=steps,
        xy=xy, loss=loss, forward_passes=passes[:n].copy(), diverged_at=diverged_at,
    )


# --------------------------------------------------------------------------------- repeats over seeds
@dataclass
class Repeats:
    """The same run over several seeds, with per-step median and quantile bands of the loss.

    ``losses [S, steps+1]`` holds every seed's loss, padded with NaN after a divergence; the bands use
    ``nanmedian``/``nanquantile`` over the runs still alive at each step (``alive [steps+1]`` counts
    them; a step where none is alive is NaN). ``final_losses [S]`` is ``inf`` for a diverged run, so
    ``median_final`` ranks diverging settings last.
    """

    trajectories: list[Trajectory]
    quantiles: tuple[float, float]
    losses: np.ndarray
    median: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    alive: np.ndarray
    final_losses: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def seeds(self) -> list[int]:
        return [tr.seed for tr in self.trajectories]

    @property
    def median_final(self) -> float:
        """Median over seeds of the final loss (``inf`` for diverged runs)."""
        return float(np.median(self.final_losses))

    @property
    def diverged(self) -> int:
        return sum(tr.diverged_at is not None for tr in self.trajectories)


def nanquantiles(a: np.ndarray, qs: Sequence[float]) -> np.ndarray:
    """Quantiles ``qs`` of every column of ``a [S, N]`` over its non-NaN entries, ``[len(qs), N]``.

    Equal to ``np.nanquantile(a, qs, axis=0)`` (linear interpolation), without its Python loop over
    columns (``apply_along_axis``), which took a third of a cached Playground re-render for 500 steps.
    Every column needs at least one non-NaN entry.
    """
    a = np.asarray(a, dtype=np.float64)
    if not np.isnan(a).any():
        return np.quantile(a, list(qs), axis=0)
    ordered = np.sort(a, axis=0)  # NaN sorts last
    count = (~np.isnan(a)).sum(axis=0)
    if (count == 0).any():
        raise ValueError("every column needs at least one non-NaN value")
    out = np.empty((len(qs), a.shape[1]))
    for i, q in enumerate(qs):
        pos = q * (count - 1)
        below = np.floor(pos).astype(np.int64)
        above = np.minimum(below + 1, count - 1)
        lo_v = np.take_along_axis(ordered, below[None], axis=0)[0]
        hi_v = np.take_along_axis(ordered, above[None], axis=0)[0]
        frac = pos - below
        # numpy's lerp, exact at frac 0 and 1 (and for ±inf endpoints with frac 0)
        with np.errstate(invalid="ignore"):
            mid = np.where(frac >= 0.5, hi_v - (hi_v - lo_v) * (1 - frac), lo_v + (hi_v - lo_v) * frac)
        out[i] = np.where(frac == 0, lo_v, mid)
    return out


def summarize(trajectories: Sequence[Trajectory], quantiles: tuple[float, float] = (0.1, 0.9)) -> Repeats:
    """Per-step median and quantile bands of the loss over ``trajectories`` (equal ``steps``)."""
    if not trajectories:
        raise ValueError("need at least one trajectory to summarize")
    lo, hi = quantiles
    if not 0 <= lo <= hi <= 1:
        raise ValueError(f"quantiles must satisfy 0 <= low <= high <= 1, got {quantiles!r}")
    length = max(tr.steps for tr in trajectories) + 1
    losses = np.full((len(trajectories), length), np.nan)
    for i, tr in enumerate(trajectories):
        losses[i, :tr.n] = tr.loss
    alive = np.isfinite(losses).sum(axis=0)
    median = np.full(length, np.nan)
    lower = np.full(length, np.nan)
    upper = np.full(length, np.nan)
    some = alive > 0
    if some.any():
        median[some], lower[some], upper[some] = nanquantiles(losses[:, some], (0.5, lo, hi))
    finals = np.array([tr.final_loss for tr in trajectories], dtype=np.float64)
    return Repeats(list(trajectories), (lo, hi), losses, median, lower, upper, alive, finals)


def run_repeats(
    landscape: Landscape | str,
    name: str,
    steps: int = 500,
    hyper: Mapping[str, Any] | None = None,
    seeds: Iterable[int] = range(8),
    start: Point | None = None,
    seed_budget: int | None = None,
    quantiles: tuple[float, float] = (0.1, 0.9),
    max_loss: float | None = None,
) -> Repeats:
    """``run_trajectory`` once per seed, summarized by :func:`summarize`."""
    ls = resolve(landscape)
    runs = [run_trajectory(ls, name, steps, hyper, start, seed, seed_budget, max_loss) for seed in seeds]
    return summarize(runs, quantiles)
