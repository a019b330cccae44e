"""ZO-Adam: Adam fed the two-point SPSA estimate, with full moments in memory.

Zhang et al., "Revisiting Zeroth-Order Optimization for Memory-Efficient LLM Fine-Tuning: A Benchmark"
(ZO-Bench), ICML 2024. The estimate ĝ_t = c_t z_t goes through torch's own Adam (bias correction,
δ inside the denominator, L2 weight decay added to the gradient), so this is exactly
``torch.optim.Adam`` fed ĝ. It stores m and v for every parameter (memory 3P): what AdaMeZO
approximates without the memory.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

import torch
from torch.optim.adam import adam as adam_functional

from .base import ZerothOrderOptimizer
from .specs import BETA1, BETA2, DELTA


class ZOAdam(ZerothOrderOptimizer):
    """Adam on SPSA gradient estimates (2 forward passes a step, 2P floats of state)."""

    hyperparameters = ZerothOrderOptimizer.hyperparameters | {
        s.name: s for s in (replace(BETA1, default=0.9), replace(BETA2, default=0.999), DELTA)
    }

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict],
        lr: float = 1e-3,
        eps: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        delta: float = 1e-8,
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
        self.delta = specs["delta"].validate(delta, name)
        super().__init__(params, lr, eps, weight_decay, seed, seed_budget, chunk_size, distribution, workers)

    def _config(self) -> dict:
        return super()._config() | {"betas": self.betas, "delta": self.delta}

    def _update(self, seed: int, c: float) -> None:
        self._history = [(seed, c)]
        grads = [torch.empty_like(p) for p in self._params]
        def one(b: int, w: int) -> None:
            block = self._blocks[b]
            z = self._z(seed, b, w)
            self._view(block).add_(z, alpha=self.eps)  # restore θ
            grads[block.param].view(-1)[block.start:block.stop] = z.mul_(c)

        self._for_blocks(one)
        index = 0  # self._params lists the trainable parameters group by group, in order
        for group in self.param_groups:
            params, group_grads, exp_avgs, exp_avg_sqs, steps = [], [], [], [], []
            for p in group["params"]:
                if not p.requires_grad:
                    continue
                group_grads.append(grads[index])
                index += 1
                state = self.state[p]
                if not state:
                    state["step"] = torch.tensor(0.0, dtype=torch.float32)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                params.append(p.detach())
                exp_avgs.append(state["exp_avg"])
                exp_avg_sqs.append(state["exp_avg_sq"])
                steps.append(state["step"])
            adam_functional(params, group_grads, exp_avgs, exp_avg_sqs, [], steps, foreach=False,
                            amsgrad=False, beta1=self.betas[0], beta2=self.betas[1], lr=group["lr"],
                            weight_decay=group["weight_decay"], eps=self.delta, maximize=False)
