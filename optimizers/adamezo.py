"""AdaMeZO: Adam-style moments for zeroth-order fine-tuning, never stored.

Cai, Chen and Zhu, "AdaMeZO: Adam-style Zeroth-Order Optimizer for LLM Fine-tuning Without Maintaining
the Moments". The moments are recomputed every step from the last K (seed, c) pairs, regenerating the
random directions block by block (``shared/SPEC.md`` is the reference for the formulas below).

With J = min(K, pairs so far) and normalized truncated EMA weights

    a_k = (1−β1) β1^k / (1 − β1^J),     b_k = (1−β2) β2^k / (1 − β2^J),

for every block b of the parameters

    m_b = Σ_{k<J} a_k c_{t−k} z_{t−k,b}
    v_b = Σ_{k<J} b_k c_{t−k}² z_{t−k,b}²
    θ_b ← θ_b − η ( m_b / (sqrt(v_b) + δ) + λ θ_b )          (β2 = 0: θ_b ← θ_b − η (m_b + λ θ_b))

Memory besides the model: the K pairs and at most three block-sized temporaries (m_b, v_b, z).
Cost: K direction regenerations per step for the update, plus two for the perturbation.

float16/bfloat16 parameters: z is drawn in the parameter's dtype (as ``direction`` gives it) and upcast,
m_b, v_b and the new θ_b are computed in float32 buffers (δ = 1e-8 and c² z² would round to 0 or
overflow in float16) and θ_b is written back with one rounding: one block in the parameter's dtype
plus three float32 blocks of temporaries. As with any training without a float32 master copy, an
update smaller than half a unit in the last place of θ is rounded away.

Relation to the published reference code, which uses m' = Σ β1^k c z, v' = Σ β2^k c² z² and the update
100·m'/(sqrt(v') + 1e-5): with S1 = (1−β1^K)/(1−β1) and S2 = (1−β2^K)/(1−β2) (once K pairs exist)
the two agree when

    lr_ours = lr_ref · 100 · S1 / sqrt(S2)      and      delta_ours = 1e-5 / sqrt(S2).

:func:`reference_code_equivalent` computes this mapping.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from .base import ZerothOrderOptimizer
from .specs import BETA1, BETA2, DELTA, HyperSpec

HORIZON = HyperSpec("horizon", 10, kind="int", low=1, ui_low=1, ui_high=50,
                    help="K: how many past (seed, c) pairs the moments are recomputed from.")
WARMUP = HyperSpec("warmup", "partial", kind="choice", choices=("partial", "mezo"),
                   help="Before K pairs exist: 'partial' uses the pairs there are; 'mezo' (the "
                        "published code) takes MeZO steps.")


def ema_weights(beta: float, count: int) -> list[float]:
    """Normalized truncated EMA weights w_k = (1−β) β^k / (1 − β^J), k = 0 … J−1 (k = 0 newest)."""
    norm = 1.0 - beta**count
    return [(1.0 - beta) * beta**k / norm for k in range(count)]


def reference_code_equivalent(lr_ref: float, betas: tuple[float, float], horizon: int) -> dict[str, float]:
    """lr and delta of this AdaMeZO that reproduce the published code's update with ``lr_ref``."""
    b1, b2 = betas
    s1 = (1 - b1**horizon) / (1 - b1)
    s2 = (1 - b2**horizon) / (1 - b2)
    return {"lr": lr_ref * 100 * s1 / math.sqrt(s2), "delta": 1e-5 / math.sqrt(s2)}


class AdaMeZO(ZerothOrderOptimizer):
    """Memory-free Adam-style zeroth-order optimizer (2 forward passes a step, no per-parameter state)."""

    hyperparameters = ZerothOrderOptimizer.hyperparameters | {
        s.name: s for s in (BETA1, BETA2, HORIZON, DELTA, WARMUP)
    }

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict],
        lr: float = 1e-3,
        eps: float = 1e-3,
        betas: tuple[float, float] = (0.7, 0.9),
        horizon: int = 10,
        delta: float = 1e-8,
        warmup: str = "partial",
        weight_decay: float = 0.0,
        seed: int = 0,
        seed_budget: int | None = None,
        chunk_size: int = 2**20,
        distribution: str = "gaussian",
        workers: int | None = None,
    ) -> None:
        specs = self.hyperparameters
        name = type(self).__name__
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"{name}: invalid betas={betas!r}; allowed: a pair (beta1, beta2), each in [0, 1)")
        self.betas = (specs["beta1"].validate(betas[0], name), specs["beta2"].validate(betas[1], name))
        self.horizon = specs["horizon"].validate(horizon, name)
        self.delta = specs["delta"].validate(delta, name)
        self.warmup = specs["warmup"].validate(warmup, name)
        super().__init__(params, lr, eps, weight_decay, seed, seed_budget, chunk_size, distribution, workers)

    def _config(self) -> dict:
        return super()._config() | {"betas": self.betas, "horizon": self.horizon,
                                    "delta": self.delta, "warmup": self.warmup}

    def _history_cap(self, config: dict) -> int:
        return config["horizon"]

    def _update(self, seed: int, c: float) -> None:
        self._history.append((seed, c))
        del self._history[:-self.horizon]
        count = len(self._history)
        if self.warmup == "mezo" and count < self.horizon:
            self._sgd_update(seed, c)
            return
        beta1, beta2 = self.betas
        newest_first = self._history[::-1]
        # Per pair: the weight of z in m (a_k c_k) and of z² in v (b_k c_k²). Pairs with both weights
        # zero (β = 0 makes all but the newest vanish) are skipped: no regeneration needed.
        terms = [(s, a * ck, b * ck * ck) for (s, ck), a, b in
                 zip(newest_first, ema_weights(beta1, count), ema_weights(beta2, count))]
        terms = [terms[0]] + [t for t in terms[1:] if t[1] != 0.0 or (beta2 > 0 and t[2] != 0.0)]
        oldest_first, low = terms[::-1], self._low

        def one_low(b: int, w: int) -> None:
            """A float16/bfloat16 block, in float32. The current direction comes last, so that its z is
            still in the buffer for the restore, and v's buffer then holds the new θ_b."""
            m, v = self._buffer(1, b, w), self._buffer(2, b, w)
            for k, (s, wm, wv) in enumerate(oldest_first):
                z = self._z32(s, b, w)
                if k == 0:
                    torch.mul(z, wm, out=m)
                    if beta2 > 0:
                        torch.mul(z, z, out=v).mul_(wv)
                else:
                    m.add_(z, alpha=wm)
                    if beta2 > 0:
                        v.addcmul_(z, z, value=wv)
            if beta2 > 0:
                m.div_(v.sqrt_().add_(self.delta))
            theta, lr = self._restore_decay32(b, z, v)
            self._view(self._blocks[b]).copy_(theta.add_(m, alpha=-lr))

        def one(b: int, w: int) -> None:
            if low[b]:
                one_low(b, w)
                return
            m, v = self._buffer(1, b, w), self._buffer(2, b, w)
            for k, (s, wm, wv) in enumerate(terms):
                z = self._z(s, b, w)
                if k == 0:  # the current direction: restore θ (fused with the update)
                    view, lr = self._restore_decay(b, z)
                    torch.mul(z, wm, out=m)
                    if beta2 > 0:
                        torch.mul(z, z, out=v).mul_(wv)
                else:
                    m.add_(z, alpha=wm)
                    if beta2 > 0:
                        v.addcmul_(z, z, value=wv)
            if beta2 > 0:
                m.div_(v.sqrt_().add_(self.delta))
            view.add_(m, alpha=-lr)

        self._for_blocks(one)
