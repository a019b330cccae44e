"""ZO-AdaMU: the perturbation itself carries the momentum, and its uncertainty scales the step.

Jiang, Chen, Pan, Xiang, Lin, Wu, Liu and Song, "ZO-AdaMU Optimizer: Adapting Perturbation by the Momentum
and Uncertainty in Zeroth-Order Optimization", AAAI 2024 (arXiv:2312.15184).

The algorithm as the paper states it (to the best of our knowledge; we had no access to the authors'
code). Each step draws a zero-centred and a momentum-centred Gaussian and mixes them into the
perturbation, which is also the new momentum::

    ż_t ~ N(0, α_t),   z̈_t ~ N(m_{t−1}, 1 − α_t)          α_t: the annealed "uncertainty"
    m_t = β1 ż_t + (1 − β1) z̈_t                          the perturbation (momentum on the perturbation)
    v_t = β2 ż_t² + (1 − β2) z̈_t²                         its second moment
    c_t = [L(θ + ε m_t) − L(θ − ε m_t)] / (2ε)           2 forward passes
    θ ← θ − η ( c_t m_t / sqrt(v_t + σ) + λ θ )

Both draws are regenerated from the step's seed (ż from ``direction(seed)``, z̈'s noise from a second
key derived from it), so the state is m alone, one tensor per parameter (memory 2P with the weights;
the AdaMeZO paper counts ZO-AdaMU at 3P, which would be storing v too: here v is recomputed in the
step, from the same draws). With β1 = β2, |m| ≤ sqrt(v) coordinate-wise (Jensen), so a step moves a
coordinate by at most η|c|.

Choices the paper leaves open, or that we could not check, and what we chose:

- N(μ, s) is read with s as the variance (so the two draws' variances add up to 1).
- The simulated-annealing schedule of α (three phases): α = 1 for the first T steps (pure
  exploration; m is still being built), then linear from 1 to ``uncertainty`` over the next T steps,
  then ``uncertainty``; T = ``anneal_steps``. β1 and β2 are kept constant (the paper anneals them too).
- The paper's step writes the second moment as sqrt(v² + σ) and one step ahead of the perturbation; we
  use sqrt(v + σ) (the units of a second moment) of the perturbation actually used, with σ = ``delta``.
- Defaults (ours): β1 = β2 = 0.8, uncertainty 0.5, T = 100, σ = 1e-8.
- Several directions a step (``num_directions=q``, not in the paper): each direction j draws its own
  ż_j, z̈_j around the same m_{t−1}; the update averages c_j m_j / sqrt(v_j + σ), and m_t is the mean
  of the q perturbations.

float16/bfloat16 parameters: m is float32 and the draws and the update are computed in float32, written
back with one rounding.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import replace

import torch

from . import state_checks as checks
from .base import ZerothOrderOptimizer, compute_dtype
from .directions import mix_key
from .specs import BETA1, BETA2, DELTA, HyperSpec, validate_betas

UNCERTAINTY = HyperSpec("uncertainty", 0.5, low=0.0, high=1.0, ui_low=0.0, ui_high=1.0,
                        help="α after annealing: the share of the perturbation's variance drawn around zero "
                             "(the rest is drawn around the momentum).")
ANNEAL_STEPS = HyperSpec("anneal_steps", 100, kind="int", low=1, log=True, ui_low=1, ui_high=10_000,
                         help="T: α = 1 for T steps, then falls linearly to the uncertainty over T steps.")
_SECOND_DRAW = 0xADA_2


class ZOAdaMU(ZerothOrderOptimizer):
    """ZO-AdaMU (2 forward passes a step, P floats of state: the momentum of the perturbation)."""

    hyperparameters = ZerothOrderOptimizer.hyperparameters | {
        s.name: s for s in (replace(BETA1, default=0.8), replace(BETA2, default=0.8), UNCERTAINTY, ANNEAL_STEPS,
                            replace(DELTA, help="σ added to v under the square root."))
    }

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict],
        lr: float = 1e-3,
        eps: float = 1e-3,
        betas: tuple[float, float] = (0.8, 0.8),
        uncertainty: float = 0.5,
        anneal_steps: int = 100,
        delta: float = 1e-8,
        weight_decay: float = 0.0,
        seed: int = 0,
        seed_budget: int | None = None,
        chunk_size: int = 2**20,
        distribution: str = "gaussian",
        workers: int | None = None,
        num_directions: int = 1,
        process_group: torch.distributed.ProcessGroup | None = None,
    ) -> None:
        specs, name = self.hyperparameters, type(self).__name__
        self.betas = validate_betas(betas, specs, name)
        self.uncertainty = specs["uncertainty"].validate(uncertainty, name)
        self.anneal_steps = specs["anneal_steps"].validate(anneal_steps, name)
        self.delta = specs["delta"].validate(delta, name)
        super().__init__(params, lr, eps, weight_decay, seed, seed_budget, chunk_size, distribution, workers,
                         num_directions, process_group=process_group)
        for p in self._params:
            self.state[p]["momentum"] = torch.zeros_like(p, dtype=compute_dtype(p.dtype))

    def _config(self) -> dict:
        return super()._config() | {"betas": self.betas, "uncertainty": self.uncertainty,
                                    "anneal_steps": self.anneal_steps, "delta": self.delta}

    def alpha(self, step: int) -> float:
        """α_t of step ``step`` (0-based): 1, then linear down to ``uncertainty``, then ``uncertainty``."""
        T = self.anneal_steps
        if step < T:
            return 1.0
        return 1.0 - (1.0 - self.uncertainty) * min(1.0, (step - T) / T)

    def _momentum(self, b: int) -> torch.Tensor:
        block = self._blocks[b]
        return self.state[self._params[block.param]]["momentum"].view(-1)[block.start:block.stop]

    def _draws(self, seed: int, b: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The unit-variance noises of block ``b`` in the compute dtype: ż's (``direction(seed)``) and z̈'s (a
        key derived from the seed, in buffer 6), both drawn in the parameter's dtype, as directions are."""
        first = self._z32(seed, b, w) if self._low[b] else self._z(seed, b, w)
        raw = self._buffer(8, b, w)
        raw = self._samplers[w].block(mix_key(seed, _SECOND_DRAW), b, raw.numel(), raw.dtype, raw.device, out=raw)
        return first, (self._buffer(6, b, w).copy_(raw) if self._low[b] else raw)

    def draws(self, seed: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The two unit-variance noises of direction ``seed`` (ż's and z̈'s, before scaling), shaped like the
        parameters (float32 for float16/bfloat16 ones)."""
        out = ([torch.empty_like(p, dtype=compute_dtype(p.dtype)) for p in self._params],
               [torch.empty_like(p, dtype=compute_dtype(p.dtype)) for p in self._params])
        for b, block in enumerate(self._blocks):
            for target, noise in zip(out, self._draws(seed, b, 0)):
                target[block.param].view(-1)[block.start:block.stop] = noise
        return out

    def _coefficients(self) -> tuple[float, float, float]:
        """Weights of ż's noise, z̈'s noise and m_{t−1} in the perturbation of the current step."""
        beta1, alpha = self.betas[0], self.alpha(self.steps)
        return beta1 * math.sqrt(alpha), (1 - beta1) * math.sqrt(1 - alpha), 1 - beta1

    def _perturbation(self, seed: int, b: int, w: int, compute: bool = False) -> torch.Tensor:
        """m_t = β1 ż + (1 − β1) z̈ (always in the compute dtype)."""
        a, c2, cm = self._coefficients()
        first, second = self._draws(seed, b, w)
        return first.mul_(a).add_(second, alpha=c2).add_(self._momentum(b), alpha=cm)

    def _apply(self, entry: tuple) -> None:
        pairs = self.directions_of(entry)
        self._history = [pair[:2] for pair in pairs]
        q, low, beta2 = len(pairs), self._low, self.betas[1]
        a, c2, cm = self._coefficients()
        alpha = self.alpha(self.steps)
        root_a, root_b = math.sqrt(alpha), math.sqrt(1 - alpha)

        def restore(b: int, w: int, z: torch.Tensor) -> tuple[torch.Tensor, float]:
            """θ is at θ − ε m_t of the last direction: move it back (fused with the update)."""
            if low[b]:
                return self._restore_decay32(b, z, self._buffer(7, b, w))
            return self._restore_decay(b, z)

        def one(b: int, w: int) -> None:
            """One direction: three blocks of temporaries (the two draws and m_t)."""
            m = self._momentum(b)
            seed, c = pairs[0][:2]
            first, second = self._draws(seed, b, w)
            z = torch.mul(first, a, out=self._buffer(4, b, w)).add_(second, alpha=c2).add_(m, alpha=cm)
            theta, lr = restore(b, w, z)
            zdot, zddot = first.mul_(root_a), second.mul_(root_b).add_(m)
            v = torch.mul(zdot, zdot, out=zdot).mul_(beta2).addcmul_(zddot, zddot, value=1 - beta2)
            m.copy_(z)
            theta.add_(z.div_(v.add_(self.delta).sqrt_()), alpha=-lr * c)
            if low[b]:
                self._view(self._blocks[b]).copy_(theta)

        def several(b: int, w: int) -> None:
            """q directions: two more blocks (the update's sum and the perturbations' mean)."""
            m = self._momentum(b)
            step, mean = self._buffer(1, b, w), self._buffer(2, b, w)
            for j, (seed, c) in enumerate(pair[:2] for pair in pairs):
                first, second = self._draws(seed, b, w)
                z = torch.mul(first, a, out=self._buffer(4, b, w)).add_(second, alpha=c2).add_(m, alpha=cm)
                if j == q - 1:
                    theta, lr = restore(b, w, z)
                zdot, zddot = first.mul_(root_a), second.mul_(root_b).add_(m)
                v = torch.mul(zdot, zdot, out=zdot).mul_(beta2).addcmul_(zddot, zddot, value=1 - beta2)
                if j == 0:
                    mean.copy_(z)
                else:
                    mean.add_(z)
                term = z.div_(v.add_(self.delta).sqrt_()).mul_(c / q)  # c_j m_j / sqrt(v_j + σ) / q
                if j == 0:
                    step.copy_(term)
                else:
                    step.add_(term)
            theta.add_(step, alpha=-lr)
            m.copy_(mean.div_(q))
            if low[b]:
                self._view(self._blocks[b]).copy_(theta)

        self._for_blocks(one if q == 1 else several)

    def _checked_param_state(self, p: torch.Tensor, entry: dict, where: str) -> dict:
        """m: a finite tensor shaped like the parameter (float32 for low-precision ones)."""
        checks.keys(entry, where, "the state", ("momentum",))
        return {"momentum": checks.tensor(entry["momentum"], f"{where}: 'momentum'", p, compute_dtype(p.dtype),
                                          p.device)}
