"""Inside one step: what the optimizers compute, read from the real optimizer classes on a landscape.

- :func:`spsa_draws`: the two-point SPSA estimate ĉ z at one point, drawn many times with MeZO's own
  random directions, next to the true gradient (autograd through the landscape).
- :func:`moment_snapshot`: AdaMeZO's first and second moments at one step, rebuilt from the K
  (seed, c) pairs it keeps (``history``) and the directions it regenerates (``direction(seed)``),
  beside what ZO-Adam stores as full tensors after the same steps.

Nothing here re-implements an optimizer: the directions, seeds and pairs come from the optimizer
objects; the only arithmetic is the two formulas the optimizers document (SPSA's c, and AdaMeZO's
normalized truncated EMA weights ``optimizers.ema_weights``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from optimizers import ema_weights, make_optimizer, state_bytes

from .engine import resolve
from .landscape import Landscape, Point, check_point


@dataclass(frozen=True)
class SpsaDraws:
    """``n`` two-point estimates at ``point``: ``z [n, 2]`` the directions, ``c [n]`` the measured slopes
    ``(f(θ+εz) − f(θ−εz)) / 2ε``, ``estimates [n, 2] = c z``, and ``gradient [2]`` the true ∇f(θ)."""

    point: Point
    eps: float
    seed: int
    z: np.ndarray
    c: np.ndarray
    estimates: np.ndarray
    gradient: np.ndarray

    def mean_error(self) -> float:
        """‖mean of the estimates − ∇f‖ / ‖∇f‖: how far the average of all draws is from the truth."""
        return float(np.linalg.norm(self.estimates.mean(axis=0) - self.gradient) / np.linalg.norm(self.gradient))

    def single_errors(self) -> np.ndarray:
        """‖c z − ∇f‖ / ‖∇f‖ of every single draw."""
        return np.linalg.norm(self.estimates - self.gradient, axis=1) / np.linalg.norm(self.gradient)


def spsa_draws(landscape: Landscape | str, point: Point, n: int = 200, eps: float = 1e-3,
               seed: int = 0) -> SpsaDraws:
    """``n`` SPSA estimates at ``point``, with the directions MeZO(seed=seed) draws at steps 0 … n−1.

    The estimate of step t is c_t z_t with z_t = ``opt.direction(opt.seed_for_step(t))`` and
    c_t = (f(θ + ε z_t) − f(θ − ε z_t)) / (2ε): exactly what MeZO computes at θ before it updates.
    """
    ls = resolve(landscape)
    point = check_point(point, "point")
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 100_000:
        raise ValueError(f"n must be an integer from 1 to 100000, got {n!r}")
    theta = torch.nn.Parameter(torch.tensor(point, dtype=torch.float64))
    opt = make_optimizer("mezo", [theta], eps=eps, seed=seed)
    z = np.stack([opt.direction(opt.seed_for_step(t))[0].numpy() for t in range(n)])
    base = torch.tensor(point, dtype=torch.float64)
    zt = torch.from_numpy(z)
    with torch.no_grad():
        plus, minus = ls.f(base + eps * zt), ls.f(base - eps * zt)
    c = ((plus - minus) / (2 * eps)).numpy()
    x = base.clone().requires_grad_(True)
    ls.f(x).backward()
    gradient = x.grad.numpy().copy()
    if not (np.isfinite(c).all() and np.isfinite(gradient).all()):
        raise ValueError(f"the landscape is not finite around {point}; choose another point")
    return SpsaDraws(point, float(eps), int(seed), z, c, c[:, None] * z, gradient)


@dataclass(frozen=True)
class MomentSnapshot:
    """AdaMeZO's moments at step ``step`` (1-based), rebuilt, and ZO-Adam's stored ones after the same steps.

    ``pairs`` the (seed, c) pairs AdaMeZO keeps, newest first; ``directions [J, 2]`` the regenerated z of
    each pair; ``weights_m``/``weights_v`` the EMA weights a_k, b_k; ``m``/``v`` the moments rebuilt
    from them (m = Σ a_k c_k z_k, v = Σ b_k c_k² z_k²); ``stored_m``/``stored_v`` ZO-Adam's
    bias-corrected moments m̂, v̂ (its state, 2 tensors of the parameter's size); ``point`` AdaMeZO's
    θ after the step; ``adamezo_bytes``/``zo_adam_bytes`` their state sizes (``optimizers.state_bytes``).
    """

    step: int
    horizon: int
    betas: tuple[float, float]
    pairs: tuple[tuple[int, float], ...]
    directions: np.ndarray
    weights_m: np.ndarray
    weights_v: np.ndarray
    m: np.ndarray
    v: np.ndarray
    stored_m: np.ndarray
    stored_v: np.ndarray
    point: np.ndarray
    zo_adam_point: np.ndarray
    adamezo_bytes: int
    zo_adam_bytes: int

    def relative_difference(self) -> float:
        """max over m and v of ‖rebuilt − stored‖ / ‖stored‖."""
        dm = np.linalg.norm(self.m - self.stored_m) / max(np.linalg.norm(self.stored_m), 1e-300)
        dv = np.linalg.norm(self.v - self.stored_v) / max(np.linalg.norm(self.stored_v), 1e-300)
        return float(max(dm, dv))


def moment_snapshot(landscape: Landscape | str, step: int, hyper: Mapping[str, Any] | None = None,
                    start: Point | None = None, seed: int = 0, seed_budget: int | None = None) -> MomentSnapshot:
    """Run AdaMeZO and ZO-Adam side by side for ``step`` steps with the same hyperparameters (lr, eps,
    betas, delta; AdaMeZO's ``horizon``) and seeds, then rebuild AdaMeZO's moments of that step.

    While ``step ≤ horizon`` the two optimizers compute the same update (normalized truncated EMA over
    all the steps so far = Adam's bias-corrected EMA), so their moments agree to round-off; after that,
    AdaMeZO's moments forget everything older than K steps and the two drift apart.
    """
    ls = resolve(landscape)
    if isinstance(step, bool) or not isinstance(step, int) or not 1 <= step <= 10_000:
        raise ValueError(f"step must be an integer from 1 to 10000, got {step!r}")
    hyper = dict(hyper or {})
    shared = {k: v for k, v in hyper.items() if k in ("lr", "eps", "beta1", "beta2", "delta")}
    start = ls.start if start is None else check_point(start, "start")
    theta_a = torch.nn.Parameter(torch.tensor(start, dtype=torch.float64))
    theta_z = torch.nn.Parameter(torch.tensor(start, dtype=torch.float64))
    if float(hyper.get("beta2", 0.9)) == 0:
        raise ValueError("moment_snapshot needs beta2 > 0: with beta2 = 0 AdaMeZO keeps no second moment, "
                         "while ZO-Adam would still divide by |g|, so the two are not the same method")
    ada = make_optimizer("adamezo", [theta_a], seed=seed, seed_budget=seed_budget, **hyper)
    zo = make_optimizer("zo-adam", [theta_z], seed=seed, seed_budget=seed_budget,
                        **(shared | {"beta1": ada.betas[0], "beta2": ada.betas[1], "delta": ada.delta}))
    for _ in range(step):
        ada.step(lambda: ls.f(theta_a))
        zo.step(lambda: ls.f(theta_z))
    pairs = tuple(reversed(ada.history))  # newest first, as the weights are indexed
    beta1, beta2 = ada.betas
    count = len(pairs)
    a = np.array(ema_weights(beta1, count))
    b = np.array(ema_weights(beta2, count))
    z = np.stack([ada.direction(s)[0].numpy() for s, _ in pairs])
    c = np.array([ck for _, ck in pairs])
    m = (a * c) @ z
    v = (b * c * c) @ (z * z)
    state = zo.state[theta_z]
    t = float(state["step"])
    stored_m = state["exp_avg"].numpy() / (1 - beta1**t)
    stored_v = state["exp_avg_sq"].numpy() / (1 - beta2**t)
    return MomentSnapshot(step, ada.horizon, (beta1, beta2), pairs, z, a, b, m, v, stored_m, stored_v,
                          theta_a.detach().numpy().copy(), theta_z.detach().numpy().copy(),
                          int(state_bytes(ada)), int(state_bytes(zo)))
