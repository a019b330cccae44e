"""Per-run metrics: final loss, distance to the nearest minimum, path length, cost, time to threshold."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .landscape import Landscape

if TYPE_CHECKING:
    from .engine import Trajectory

DEFAULT_GAP = 1e-3


@dataclass(frozen=True)
class Metrics:
    """What one run achieved.

    ``final_loss``: f at the last point (``inf`` if the run diverged). ``distance``: Euclidean distance
    from the last point to the nearest known minimum (NaN if the landscape has none). ``path_length``:
    Σ‖θ_{t+1} − θ_t‖. ``forward_passes``: the optimizer's closure calls. ``steps``: steps taken.
    ``threshold``: the loss level used; ``steps_to_threshold`` / ``forward_passes_to_threshold``: the
    first step (and its cumulative forward passes) at which the loss is ≤ threshold, or ``None``.
    """

    final_loss: float
    distance: float
    nearest_minimum: tuple[float, float, float] | None
    path_length: float
    forward_passes: int
    steps: int
    threshold: float | None
    steps_to_threshold: int | None
    forward_passes_to_threshold: int | None
    diverged_at: int | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_threshold(landscape: Landscape, gap: float = DEFAULT_GAP) -> float | None:
    """``f_min + gap`` for a landscape with a known minimum, else ``None``."""
    return None if landscape.f_min is None else landscape.f_min + gap


def compute_metrics(trajectory: Trajectory, landscape: Landscape, threshold: float | None = None) -> Metrics:
    """The :class:`Metrics` of ``trajectory`` on ``landscape``.

    ``threshold`` is an absolute loss level; by default the known minimum value plus 1e-3.
    """
    tr = trajectory
    if threshold is None:
        threshold = default_threshold(landscape)
    nearest, distance = landscape.nearest_minimum(tuple(tr.xy[-1]))
    hit_step = hit_passes = None
    if threshold is not None:
        hits = np.flatnonzero(tr.loss <= threshold)
        if hits.size:
            hit_step = int(hits[0])
            hit_passes = int(tr.forward_passes[hit_step])
    return Metrics(
        final_loss=tr.final_loss,
        distance=math.inf if tr.diverged_at is not None and nearest is not None else distance,
        nearest_minimum=nearest,
        path_length=tr.path_length,
        forward_passes=int(tr.forward_passes[-1]),
        steps=tr.n - 1,
        threshold=threshold,
        steps_to_threshold=hit_step,
        forward_passes_to_threshold=hit_passes,
        diverged_at=tr.diverged_at,
    )


# --------------------------------------------------------------------------------- path shape
def _steep_coordinate(xy: np.ndarray, angle: float) -> np.ndarray:
    """The coordinate across a straight valley whose floor runs at ``angle`` degrees through the origin:
    v = −sin(a) x + cos(a) y (the quadratic landscapes' stiff axis, ``landscapes.get("quadratic", angle=a)``)."""
    a = math.radians(angle)
    xy = np.asarray(xy, dtype=np.float64)
    return -math.sin(a) * xy[:, 0] + math.cos(a) * xy[:, 1]


def valley_swing(xy: np.ndarray, angle: float = 0.0) -> float:
    """How far a path swings across a straight valley floor after it first reaches it (zig-zag size).

    With v the coordinate across the floor (see ``_steep_coordinate``): the largest |v| after the first
    step at which v changes sign (or hits 0). A path that overshoots the floor and bounces from wall to
    wall has a large swing; one that comes down and follows the floor has a swing of the size of its
    step noise. ``0.0`` for a path that never reaches the floor.
    """
    v = _steep_coordinate(xy, angle)
    if len(v) < 2:
        return 0.0
    crossed = np.flatnonzero(np.sign(v[1:]) * np.sign(v[:-1]) <= 0)
    if not crossed.size:
        return 0.0
    return float(np.abs(v[crossed[0] + 1:]).max())


def reversal_rate(xy: np.ndarray, angle: float = 0.0) -> float:
    """The fraction of steps whose move across a straight valley (coordinate v, as in
    :func:`valley_swing`) points the opposite way from the previous step's: about 0.5 for a path whose
    steps are independent random draws, near 0 for a smooth one. Steps that do not move across the
    valley are skipped; ``nan`` for fewer than three moves."""
    dv = np.diff(_steep_coordinate(xy, angle))
    s = np.sign(dv[dv != 0])
    if len(s) < 2:
        return math.nan
    return float(np.mean(s[1:] * s[:-1] < 0))


def line_offset(xy: np.ndarray) -> float:
    """The largest distance of a path's points from the straight line through its start along its first
    move, divided by the path's length: 0 (to round-off) for a path confined to one line, as every path
    of a zeroth-order method with a single random direction is."""
    xy = np.asarray(xy, dtype=np.float64)
    d = np.diff(xy, axis=0)
    lengths = np.hypot(d[:, 0], d[:, 1])
    total = float(lengths.sum())
    moved = np.flatnonzero(lengths > 0)
    if not moved.size or not math.isfinite(total):
        return 0.0 if math.isfinite(total) else math.inf
    u = d[moved[0]] / lengths[moved[0]]
    rel = xy - xy[0]
    return float(np.abs(rel[:, 0] * u[1] - rel[:, 1] * u[0]).max() / total)
