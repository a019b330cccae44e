"""AdaMeZO: Adam-style moments for zeroth-order fine-tuning, never stored.

Cai, Chen and Zhu, "AdaMeZO: Adam-style Zeroth-Order Optimizer for LLM Fine-tuning Without Maintaining
the Moments". The moments are recomputed every step from the last K (seed, c) pairs, regenerating the
random directions block by block (``docs/optimizers.md`` has the formulas of every method).

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

Several directions a step (``num_directions=q``): the pair list holds q (seed, c) pairs a step, the
step's estimate is ĝ = (1/q) Σ_j c_j z_j, and m, v are the formulas above with ĝ_{t−k} in place of
c_{t−k} z_{t−k} (v over ĝ², not the average of the c² z²); a block of ĝ is rebuilt from its q
directions, so the temporaries are four blocks (m_b, v_b, ĝ_b and z) and a step regenerates K·q
directions for the update.

The published reference code, and how to reproduce it
------------------------------------------------------
The authors' code uses unnormalized moments over the last K pairs,

    m' = Σ_{k<K} β1^k c_{t−k} z_{t−k},     v' = Σ_{k<K} β2^k c_{t−k}² z_{t−k}²

and the update θ ← θ − η_ref (100·m' / (sqrt(v') + 1e-5) + λ_ref θ) (with β2 = 0, v' is taken as 1:
the update divides by 1 + 1e-5). Before that, while the 0-based step index is ≤ K (K + 1 steps), it
takes plain MeZO steps θ ← θ − η_ref (c z + λ_ref θ) at its own lr η_ref; with K < 2 it never leaves
MeZO. By the time it switches, K pairs exist.

With S1 = (1−β1^K)/(1−β1) and S2 = (1−β2^K)/(1−β2), m' = S1·m and v' = S2·v, so the Adam-style
steps agree when

    lr_ours = lr_ref · 100 · S1 / sqrt(S2)         delta_ours = 1e-5 / sqrt(S2)
    (β2 = 0: lr_ours = lr_ref · 100 · S1 / (1 + 1e-5))
    weight_decay_ours = weight_decay_ref · lr_ref / lr_ours   (the decay step ηλ is the same)

and ``warmup="mezo"`` takes the MeZO steps at lr · ``warmup_lr_scale``, with the scale
lr_ref / lr_ours, so that they run at the published lr (their decay step ηλ is again the same).
:func:`reference_code_equivalent` returns all of it as keyword arguments: given the published lr,
betas, K and weight decay, ``AdaMeZO(groups, betas=betas, horizon=K, **reference_code_equivalent(...))``
reproduces the published run step for step, warm-up included (a test checks 30 steps against a
transcription of the published rules, for K = 1, 3 and 10). The published code also applies no
weight decay to biases and layer norms: build the param groups with
:func:`optimizers.weight_decay_groups`.

``warmup="partial"`` (the default) is this library's own choice: the moments over the pairs that
exist, at the same step scale as later steps (in the published parametrization: m' and v' over the
J pairs there are, rescaled by S1(K)/S1(J) and S2(K)/S2(J)).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from .base import ZerothOrderOptimizer
from .specs import BETA1, BETA2, DELTA, HyperSpec, validate_betas

HORIZON = HyperSpec("horizon", 10, kind="int", low=1, ui_low=1, ui_high=50,
                    help="K: how many past (seed, c) pairs the moments are recomputed from.")
WARMUP = HyperSpec("warmup", "partial", kind="choice", choices=("partial", "mezo"),
                   help="Before K pairs exist: 'partial' uses the pairs there are; 'mezo' (the "
                        "published code) takes K + 1 MeZO steps (all of them if K < 2) at lr × warmup_lr_scale.")
WARMUP_LR_SCALE = HyperSpec("warmup_lr_scale", 1.0, low=0.0, low_open=True, log=True, ui_low=1e-4, ui_high=10.0,
                            help="warmup='mezo': the MeZO steps take lr × this (reference_code_equivalent sets it "
                                 "so that they take the published lr).")


def ema_weights(beta: float, count: int) -> list[float]:
    """Normalized truncated EMA weights w_k = (1−β) β^k / (1 − β^J), k = 0 … J−1 (k = 0 newest)."""
    norm = 1.0 - beta**count
    return [(1.0 - beta) * beta**k / norm for k in range(count)]


def reference_code_equivalent(lr_ref: float, betas: tuple[float, float], horizon: int,
                              weight_decay_ref: float = 0.0) -> dict[str, float | str]:
    """The AdaMeZO settings that reproduce the published reference code run with ``lr_ref``, ``betas``,
    ``horizon`` (K) and ``weight_decay_ref``: ``lr``, ``delta``, ``weight_decay``, ``warmup="mezo"`` and
    ``warmup_lr_scale`` (the MeZO warm-up then takes exactly ``lr_ref``), to pass to :class:`AdaMeZO`
    with the same betas and horizon. See the module docstring for the derivation."""
    specs = AdaMeZO.hyperparameters
    owner = "reference_code_equivalent"
    lr_ref = specs["lr"].validate(lr_ref, owner)
    b1, b2 = validate_betas(betas, specs, owner)
    horizon = specs["horizon"].validate(horizon, owner)
    weight_decay_ref = specs["weight_decay"].validate(weight_decay_ref, owner)
    s1 = (1 - b1**horizon) / (1 - b1)
    if b2 == 0:  # the published code takes v' as 1: the update divides by 1 + 1e-5
        lr, delta = lr_ref * 100 * s1 / (1 + 1e-5), 1e-5
    else:
        s2 = (1 - b2**horizon) / (1 - b2)
        lr, delta = lr_ref * 100 * s1 / math.sqrt(s2), 1e-5 / math.sqrt(s2)
    return {"lr": lr, "delta": delta, "weight_decay": weight_decay_ref * lr_ref / lr, "warmup": "mezo",
            "warmup_lr_scale": lr_ref / lr}



def _accumulate(m: torch.Tensor, v: torch.Tensor, x: torch.Tensor, wm: float, wv: float, first: bool,
                second: bool) -> None:
    """One term of the moments, in place: m = wm·x (the first term) or m += wm·x, and with ``second``
    v = wv·x² or v += wv·x² likewise."""
    if first:
        torch.mul(x, wm, out=m)
        if second:
            torch.mul(x, x, out=v).mul_(wv)
    else:
        m.add_(x, alpha=wm)
        if second:
            v.addcmul_(x, x, value=wv)

class AdaMeZO(ZerothOrderOptimizer):
    """Memory-free Adam-style zeroth-order optimizer (2 forward passes a step, no per-parameter state)."""

    hyperparameters = ZerothOrderOptimizer.hyperparameters | {
        s.name: s for s in (BETA1, BETA2, HORIZON, DELTA, WARMUP, WARMUP_LR_SCALE)
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
        num_directions: int = 1,
        warmup_lr_scale: float = 1.0,
        process_group: torch.distributed.ProcessGroup | None = None,
    ) -> None:
        specs = self.hyperparameters
        name = type(self).__name__
        self.betas = validate_betas(betas, specs, name)
        self.horizon = specs["horizon"].validate(horizon, name)
        self.delta = specs["delta"].validate(delta, name)
        self.warmup = specs["warmup"].validate(warmup, name)
        self.warmup_lr_scale = specs["warmup_lr_scale"].validate(warmup_lr_scale, name)
        super().__init__(params, lr, eps, weight_decay, seed, seed_budget, chunk_size, distribution, workers,
                         num_directions, process_group=process_group)

    def _config(self) -> dict:
        return super()._config() | {"betas": self.betas, "horizon": self.horizon, "delta": self.delta,
                                    "warmup": self.warmup, "warmup_lr_scale": self.warmup_lr_scale}

    def _checked_state(self, sd: dict, where: str) -> dict:
        zo = sd.get("zeroth_order") if isinstance(sd, dict) else None
        config = zo.get("config") if isinstance(zo, dict) else None
        if isinstance(config, dict) and "warmup" in config and "warmup_lr_scale" not in config:
            # A state from before warmup_lr_scale existed: its MeZO warm-up took the lr as it is.
            sd = {**sd, "zeroth_order": {**zo, "config": {**config, "warmup_lr_scale": 1.0}}}
        return super()._checked_state(sd, where)

    def _history_cap(self, config: dict) -> int:
        return config["horizon"]

    def in_mezo_warmup(self, step: int) -> bool:
        """Whether step ``step`` (0-based) is a MeZO step of ``warmup="mezo"``: the published code's rule,
        step ≤ K, and every step when K < 2."""
        return self.warmup == "mezo" and (step <= self.horizon or self.horizon < 2)

    def _apply(self, entry: tuple) -> None:
        pairs = self.directions_of(entry)
        q = len(pairs)
        self._history.extend(pair[:2] for pair in pairs)
        del self._history[:-self.horizon * q]
        if self.in_mezo_warmup(self.steps):
            self._sgd_update(pairs, self.warmup_lr_scale)
            return
        if q == 1:
            self._adam_update()
        else:
            self._adam_update_directions(q)

    def _adam_update(self) -> None:
        """The update of one direction a step, fused with the restore (θ is at θ − ε z_t)."""
        count = len(self._history)
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
                _accumulate(m, v, z, wm, wv, k == 0, beta2 > 0)
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
                _accumulate(m, v, z, wm, wv, k == 0, beta2 > 0)
            if beta2 > 0:
                m.div_(v.sqrt_().add_(self.delta))
            view.add_(m, alpha=-lr)

        self._for_blocks(one)

    def _adam_update_directions(self, q: int) -> None:
        """The update with q directions a step: m and v over the steps' averaged estimates ĝ (θ is at
        θ − ε z of the current step's last direction)."""
        count = len(self._history) // q
        beta1, beta2 = self.betas
        steps = [self._history[i * q:(i + 1) * q] for i in range(count)][::-1]  # newest first
        terms = [(pairs, a, b) for pairs, a, b in
                 zip(steps, ema_weights(beta1, count), ema_weights(beta2, count))]
        terms = [terms[0]] + [t for t in terms[1:] if t[1] != 0.0 or (beta2 > 0 and t[2] != 0.0)]
        last, low = steps[0][-1][0], self._low

        def one(b: int, w: int) -> None:
            if low[b]:
                theta, lr = self._restore_decay32(b, self._z32(last, b, w), self._buffer(5, b, w))
            else:
                theta, lr = self._restore_decay(b, self._z(last, b, w))
            m, v, g = self._buffer(1, b, w), self._buffer(2, b, w), self._buffer(4, b, w)
            for k, (pairs, wm, wv) in enumerate(terms):
                _accumulate(m, v, self._estimate_block(pairs, b, w, g), wm, wv, k == 0, beta2 > 0)
            if beta2 > 0:
                m.div_(v.sqrt_().add_(self.delta))
            theta.add_(m, alpha=-lr)
            if low[b]:
                self._view(self._blocks[b]).copy_(theta)

        self._for_blocks(one)
