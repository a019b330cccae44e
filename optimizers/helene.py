"""HELENE: a clipped diagonal-Hessian preconditioner and an annealed momentum for zeroth-order fine-tuning.

Zhao, Li, Pan, Liang, Yang, Dou, Liu and Lu, "HELENE: Hessian Layer-wise Clipping and Gradient Annealing
for Accelerating Fine-tuning LLM with Zeroth-order Optimization", arXiv:2411.10696 (2024), EMNLP 2025.

The algorithm as the paper states it (to the best of our knowledge; we had no access to the authors'
code), on the SPSA estimate, with t the 0-based step and l a layer::

    g_t = c_t z_t,   c_t = [L(θ + ε z_t) − L(θ − ε z_t)] / (2ε)           2 forward passes
    α_t = β1 + (1 − β1) · exp(−t / T)                                   gradient annealing
    m_t = β1 m_{t−1} + α_t g_t
    every k steps:  ĥ_t = g_t ⊙ g_t   (A-GNB)      h_t = β2 h_{t−k} + (1 − β2) ĥ_t
    θ_l ← θ_l − η ( m_l / (max(h_l, λ_l) + δ) + w θ_l )                 layer-wise clipping

State: m and h for every parameter (memory 3P with the weights, as the AdaMeZO paper's Table 1 says),
float32 for float16/bfloat16 parameters.

Choices the paper leaves open, or that we could not check, and what we chose:

- A-GNB (the "asymptotic Gauss-Newton-Bartlett" estimator, (1/B) Σ_b ∇L_b ⊙ ∇L_b with the true
  labels) needs per-example gradients; the library's closure returns one batch loss, so we use the
  batch's SPSA estimate: ĥ = g ⊙ g (B = 1). A factor B would only rescale h against λ.
- The paper's scale γ in γ·max(h, λ) is folded into the lr (η/γ: the same update but for δ).
- Layer-wise clipping thresholds λ_l: a per-param-group value ``hessian_clip`` (give each layer its
  own group to set them per layer); the constructor's value is every group's default. The paper
  derives its thresholds from the layers; we leave them to the user.
- The exact annealing schedule: α_t as above, with ``anneal_steps`` = T; h starts at 0 and is
  refreshed at steps t with t mod k = 0 (the first step included), ``hessian_interval`` = k.
- Defaults (ours: the paper's are not given for this setting): β = (0.9, 0.9), k = 1 (A-GNB from the
  SPSA estimate costs no extra forward pass, so nothing is saved by refreshing h less often; k = 10,
  Sophia's choice, and β2 = 0.99 left h too small for too long on the test battery's quadratic), λ = 1,
  T = 100.
- δ (``delta``) keeps the denominator positive when λ = 0; weight decay w is added to the update, as
  for MeZO (not preconditioned).
- Several directions a step (``num_directions=q``, not in the paper): g_t is the averaged estimate.

float16/bfloat16 parameters: m and h are float32 (``state_bytes`` counts 4 bytes an element), the
update is computed per block in float32 and written back with one rounding.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import replace

import torch

from . import state_checks as checks
from .base import ZerothOrderOptimizer, compute_dtype
from .specs import BETA1, BETA2, DELTA, HyperSpec, validate_betas

HESSIAN_CLIP = HyperSpec("hessian_clip", 1.0, low=0.0, ui_low=0.0, ui_high=100.0,
                         help="λ: the diagonal Hessian estimate is clipped from below at λ (per param group: "
                              "one layer, one λ).")
HESSIAN_INTERVAL = HyperSpec("hessian_interval", 1, kind="int", low=1, ui_low=1, ui_high=100,
                             help="k: the Hessian estimate h is refreshed every k steps.")
ANNEAL_STEPS = HyperSpec("anneal_steps", 100, kind="int", low=1, log=True, ui_low=1, ui_high=10_000,
                         help="T: the gradient's weight in the momentum anneals from 1 to β1 as exp(−t/T).")


class HELENE(ZerothOrderOptimizer):
    """HELENE (2 forward passes a step, 2P floats of state: momentum and clipped diagonal Hessian)."""

    group_keys = ("lr", "weight_decay", "hessian_clip")
    hyperparameters = ZerothOrderOptimizer.hyperparameters | {
        s.name: s for s in (replace(BETA1, default=0.9), replace(BETA2, default=0.9), DELTA, HESSIAN_CLIP,
                            HESSIAN_INTERVAL, ANNEAL_STEPS)
    }

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict],
        lr: float = 1e-4,
        eps: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.9),
        hessian_clip: float = 1.0,
        hessian_interval: int = 1,
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
        self.hessian_interval = specs["hessian_interval"].validate(hessian_interval, name)
        self.anneal_steps = specs["anneal_steps"].validate(anneal_steps, name)
        self.delta = specs["delta"].validate(delta, name)
        clip = specs["hessian_clip"].validate(hessian_clip, name)
        super().__init__(params, lr, eps, weight_decay, seed, seed_budget, chunk_size, distribution, workers,
                         num_directions, process_group=process_group, group_defaults={"hessian_clip": clip})
        for p in self._params:
            self.state[p]["exp_avg"] = torch.zeros_like(p, dtype=compute_dtype(p.dtype))
            self.state[p]["hessian"] = torch.zeros_like(p, dtype=compute_dtype(p.dtype))

    def _config(self) -> dict:
        return super()._config() | {"betas": self.betas, "hessian_interval": self.hessian_interval,
                                    "anneal_steps": self.anneal_steps, "delta": self.delta}

    def annealing(self, step: int) -> float:
        """α_t = β1 + (1 − β1)·exp(−t/T): the weight of step ``step``'s estimate in the momentum."""
        beta1 = self.betas[0]
        return beta1 + (1 - beta1) * math.exp(-step / self.anneal_steps)

    def _state_block(self, key: str, b: int) -> torch.Tensor:
        block = self._blocks[b]
        return self.state[self._params[block.param]][key].view(-1)[block.start:block.stop]

    def _apply(self, entry: tuple) -> None:
        pairs = self.directions_of(entry)
        self._history = [pair[:2] for pair in pairs]
        (beta1, beta2), low = self.betas, self._low
        alpha = self.annealing(self.steps)
        refresh = self.steps % self.hessian_interval == 0
        last, c = pairs[-1][0], pairs[0][1]

        def one(b: int, w: int) -> None:
            if low[b]:
                z = self._z32(last, b, w)
                theta, lr = self._restore_decay32(b, z, self._buffer(1, b, w))
            else:
                z = self._z(last, b, w)
                theta, lr = self._restore_decay(b, z)
            g = z.mul_(c) if len(pairs) == 1 else self._estimate_block(pairs, b, w, self._buffer(4, b, w))
            m, h = self._state_block("exp_avg", b), self._state_block("hessian", b)
            m.mul_(beta1).add_(g, alpha=alpha)
            if refresh:
                h.mul_(beta2).addcmul_(g, g, value=1 - beta2)
            clip = self._group_of[self._blocks[b].param]["hessian_clip"]
            denominator = torch.clamp(h, min=clip, out=self._buffer(2, b, w)).add_(self.delta)
            theta.addcdiv_(m, denominator, value=-lr)
            if low[b]:
                self._view(self._blocks[b]).copy_(theta)

        self._for_blocks(one)

    def _checked_param_state(self, p: torch.Tensor, entry: dict, where: str) -> dict:
        """m and h: finite tensors shaped like the parameter (float32 for low-precision ones), h >= 0."""
        checks.keys(entry, where, "the state", ("exp_avg", "hessian"))
        dtype = compute_dtype(p.dtype)
        return {"exp_avg": checks.tensor(entry["exp_avg"], f"{where}: 'exp_avg'", p, dtype, p.device),
                "hessian": checks.tensor(entry["hessian"], f"{where}: 'hessian'", p, dtype, p.device, low=0.0)}
