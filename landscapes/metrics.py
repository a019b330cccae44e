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
