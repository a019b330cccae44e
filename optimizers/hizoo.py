"""HiZOO: zeroth-order optimization with a diagonal Hessian estimate, as in its published code.

Zhao et al., "Second-Order Fine-Tuning without Pain for LLMs: A Hessian Informed Zeroth-Order
Optimizer", 2024. State Σ (initialized to ones, one tensor per parameter: memory 2P)::

    L0 = L(θ);  L± = L(θ ± ε Σ^{-1/2} z)                                  3 forward passes
    c  = (L+ − L−) / (2ε)
    Σ ← (1−α) Σ + α · |L+ + L− − 2 L0| / (2ε²) · Σ ⊙ z ⊙ z
    θ ← θ − η ( c · z / sqrt(Σ) + λ θ )

α (``hessian_smooth``) = 0 keeps Σ = 1 and reduces to MeZO.

Several directions a step (``num_directions=q``): one L0, then q directions (2q + 1 forward passes),
each with its own curvature estimate; Σ takes their average, Σ ← (1−α) Σ + α · (1/q) Σ_j curv_j · Σ ⊙ z_j²,
and θ ← θ − η ((1/q) Σ_j c_j z_j / sqrt(Σ) + λ θ). The extra forward pass and the curvature plug into
the base class's hooks (:meth:`_base_loss`, :meth:`_direction_extras`, :meth:`_perturbation`).

float16/bfloat16 parameters: Σ is kept in float32 (its updates, α = 1e-8 times the curvature, would
round away in float16: 4 bytes per element, as ``state_bytes`` counts), z / sqrt(Σ) is computed in
float32 for the perturbation, and the update per block in float32 with one rounding into θ.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from . import state_checks as checks
from .base import Closure, ZerothOrderOptimizer, check_loss, compute_dtype
from .specs import HyperSpec

HESSIAN_SMOOTH = HyperSpec("hessian_smooth", 1e-8, low=0.0, high=1.0, ui_low=0.0, ui_high=1e-2,
                           help="α: smoothing of the diagonal Hessian estimate Σ (0 gives MeZO).")


class HiZOO(ZerothOrderOptimizer):
    """Hessian-informed zeroth-order optimizer (3 forward passes a step, P floats of state)."""

    extra_forward_passes = 1
    forward_passes_per_step = 3
    _log_length = 3
    hyperparameters = ZerothOrderOptimizer.hyperparameters | {HESSIAN_SMOOTH.name: HESSIAN_SMOOTH}

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict],
        lr: float = 1e-3,
        eps: float = 1e-3,
        hessian_smooth: float = 1e-8,
        weight_decay: float = 0.0,
        seed: int = 0,
        seed_budget: int | None = None,
        chunk_size: int = 2**20,
        distribution: str = "gaussian",
        workers: int | None = None,
        num_directions: int = 1,
        process_group: torch.distributed.ProcessGroup | None = None,
    ) -> None:
        self.hessian_smooth = self.hyperparameters["hessian_smooth"].validate(hessian_smooth, "HiZOO")
        super().__init__(params, lr, eps, weight_decay, seed, seed_budget, chunk_size, distribution, workers,
                         num_directions, process_group=process_group)
        for p in self._params:
            self.state[p]["hessian"] = torch.ones_like(p, dtype=compute_dtype(p.dtype))

    def _config(self) -> dict:
        return super()._config() | {"hessian_smooth": self.hessian_smooth}

    def _sigma(self, b: int) -> torch.Tensor:
        block = self._blocks[b]
        return self.state[self._params[block.param]]["hessian"].view(-1)[block.start:block.stop]

    def _perturbation(self, seed: int, b: int, w: int, compute: bool = False) -> torch.Tensor:
        """Σ^{-1/2} z (in float32 for float16/bfloat16 parameters, whatever ``compute`` says)."""
        z = self._z32(seed, b, w) if self._low[b] else self._z(seed, b, w)
        return z.div_(self._sigma(b).sqrt())

    def _base_loss(self, closure: Closure) -> torch.Tensor:
        """L0 = L(θ), the extra forward pass of the curvature estimate."""
        self.forward_passes += 1
        unchanged = "The parameters were not changed."
        loss = check_loss(closure(), f"HiZOO step {self.steps}", unchanged, finite=self.process_group is None)
        return self._reduce(loss, after=unchanged)[0]  # averaged over the process group, if there is one

    def _direction_extras(self, seed: int, loss_plus: torch.Tensor, loss_minus: torch.Tensor,
                          base: torch.Tensor | None) -> tuple:
        """The curvature estimate |L+ + L− − 2 L0| / (2ε²) of this direction (finite, or θ moves back)."""
        lp, lm = float(loss_plus), float(loss_minus)
        denominator = 2 * self.eps**2  # 0 for ε below ~1e-154 (float64 underflow)
        curvature = abs(lp + lm - 2 * float(base)) / denominator if denominator else math.inf
        self._check_estimate(seed, curvature, loss_plus, loss_minus, "the curvature estimate |L+ + L− − 2 L0|/(2ε²)")
        return (curvature,)

    def _apply(self, entry: tuple) -> None:
        """Restore θ, update Σ with the curvature estimate, then θ ← θ − η(c z / sqrt(Σ) + λθ)."""
        parts = self.directions_of(entry)
        self._history = [part[:2] for part in parts]
        if len(parts) > 1:
            self._apply_directions(parts)
            return
        seed, c, curvature = parts[0]
        alpha = self.hessian_smooth
        low = self._low

        def one(b: int, w: int) -> None:
            if low[b]:  # float16/bfloat16: in float32, one rounding
                z = self._z32(seed, b, w)
                sigma = self._sigma(b)
                theta, lr = self._restore_decay32(b, z / sigma.sqrt(), self._buffer(1, b, w))
                if alpha:
                    estimate = sigma * z * z
                    sigma.mul_(1 - alpha).add_(estimate, alpha=alpha * curvature)
                self._view(self._blocks[b]).copy_(theta.add_(z.div_(sigma.sqrt()).mul_(c), alpha=-lr))
                return
            z = self._z(seed, b, w)
            sigma = self._sigma(b)
            view, lr = self._restore_decay(b, z / sigma.sqrt())
            if alpha:
                estimate = sigma * z * z
                sigma.mul_(1 - alpha).add_(estimate, alpha=alpha * curvature)
            view.add_(z.div_(sigma.sqrt()).mul_(c), alpha=-lr)

        self._for_blocks(one)

    def _apply_directions(self, parts: list[tuple]) -> None:
        """q directions: Σ from their average curvature term, θ from their averaged estimate."""
        alpha, low, q = self.hessian_smooth, self._low, len(parts)
        last = parts[-1][0]

        def one(b: int, w: int) -> None:
            if low[b]:
                theta, lr = self._restore_decay32(b, self._perturbation(last, b, w), self._buffer(1, b, w))
            else:
                theta, lr = self._restore_decay(b, self._perturbation(last, b, w))
            sigma = self._sigma(b)
            if alpha:
                term = self._buffer(4, b, w)
                for j, (seed, _, curvature) in enumerate(parts):
                    z = self._z32(seed, b, w) if low[b] else self._z(seed, b, w)
                    if j == 0:
                        torch.mul(z, z, out=term).mul_(curvature / q)
                    else:
                        term.addcmul_(z, z, value=curvature / q)
                term.mul_(sigma)  # Σ ⊙ (1/q) Σ_j curv_j z_j², with the old Σ
                sigma.mul_(1 - alpha).add_(term, alpha=alpha)
            theta.add_(self._estimate_block(parts, b, w, self._buffer(4, b, w)), alpha=-lr)
            if low[b]:
                self._view(self._blocks[b]).copy_(theta)

        self._for_blocks(one)

    def _checked_param_state(self, p: torch.Tensor, entry: dict, where: str) -> dict:
        """Σ: a finite, positive tensor shaped like the parameter (float32 for low-precision ones)."""
        checks.keys(entry, where, "the state", ("hessian",))
        return {"hessian": checks.tensor(entry["hessian"], f"{where}: 'hessian'", p, compute_dtype(p.dtype),
                                         p.device, low=0.0, low_open=True)}
