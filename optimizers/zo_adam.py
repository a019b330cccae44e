"""ZO-Adam: Adam fed the two-point SPSA estimate, with full moments in memory.

Zhang et al., "Revisiting Zeroth-Order Optimization for Memory-Efficient LLM Fine-Tuning: A Benchmark"
(ZO-Bench), ICML 2024. The estimate ĝ_t = c_t z_t goes through torch's own Adam (bias correction,
δ inside the denominator, L2 weight decay added to the gradient), so this is exactly
``torch.optim.Adam`` fed ĝ. It stores m and v for every parameter (memory 3P): what AdaMeZO
approximates without the memory.

float16/bfloat16 parameters: m and v are kept in float32 (the usual choice for Adam in low precision:
δ = 1e-8 and ĝ² underflow in float16), so their state is 8 bytes per element, as ``state_bytes``
counts; the same update is computed per block in float32 (z upcast, restored θ_b in a float32 buffer)
and θ_b is written back with one rounding. float32 and float64 parameters go through torch's Adam.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import replace

import torch

from . import state_checks as checks
from .base import LOW_PRECISION, ZerothOrderOptimizer, compute_dtype
from .specs import BETA1, BETA2, DELTA, validate_betas
from .torch_compat import adam_functional


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
        num_directions: int = 1,
        process_group: torch.distributed.ProcessGroup | None = None,
    ) -> None:
        specs = self.hyperparameters
        name = type(self).__name__
        self.betas = validate_betas(betas, specs, name)
        self.delta = specs["delta"].validate(delta, name)
        super().__init__(params, lr, eps, weight_decay, seed, seed_budget, chunk_size, distribution, workers,
                         num_directions, process_group=process_group)

    def _config(self) -> dict:
        return super()._config() | {"betas": self.betas, "delta": self.delta}

    def _new_state(self, p: torch.Tensor) -> dict:
        dtype = compute_dtype(p.dtype)
        return {"step": torch.tensor(0.0, dtype=torch.float32),
                "exp_avg": torch.zeros_like(p, dtype=dtype, memory_format=torch.preserve_format),
                "exp_avg_sq": torch.zeros_like(p, dtype=dtype, memory_format=torch.preserve_format)}

    def _apply(self, entry: tuple) -> None:
        pairs = self.directions_of(entry)
        self._history = [pair[:2] for pair in pairs]
        seed, c = pairs[0][:2]
        last, single = pairs[-1][0], len(pairs) == 1
        low = self._low
        lowp = [p.dtype in LOW_PRECISION for p in self._params]
        grads = [None if lowp[i] else torch.empty_like(p) for i, p in enumerate(self._params)]
        # float16/bfloat16 parameters: torch's Adam step, per block in float32 (their step counts first)
        scalars: dict[int, tuple[float, float, float]] = {}
        beta1, beta2 = self.betas
        for i, p in enumerate(self._params):
            if lowp[i]:
                state = self.state[p]
                if not state:
                    state.update(self._new_state(p))
                state["step"] += 1
                step = float(state["step"])
                scalars[i] = (self._group_of[i]["lr"] / (1 - beta1**step), math.sqrt(1 - beta2**step),
                              self._group_of[i]["weight_decay"])

        def one(b: int, w: int) -> None:
            block = self._blocks[b]
            if low[b]:
                if single:
                    z = self._z32(seed, b, w)
                    theta = self._buffer(1, b, w).copy_(self._view(block)).add_(z, alpha=self.eps)  # restore θ
                    grad = z.mul_(c)
                else:  # ĝ: the average over the directions
                    theta = self._buffer(1, b, w).copy_(self._view(block)).add_(self._z32(last, b, w), alpha=self.eps)
                    grad = self._estimate_block(pairs, b, w, self._buffer(4, b, w))
                step_size, bias2_sqrt, weight_decay = scalars[block.param]
                if weight_decay:
                    grad.add_(theta, alpha=weight_decay)
                state = self.state[self._params[block.param]]
                m = state["exp_avg"].view(-1)[block.start:block.stop]
                v = state["exp_avg_sq"].view(-1)[block.start:block.stop]
                m.lerp_(grad, 1 - beta1)
                v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                denom = torch.sqrt(v, out=self._buffer(2, b, w)).div_(bias2_sqrt).add_(self.delta)
                self._view(block).copy_(theta.addcdiv_(m, denom, value=-step_size))
                return
            if single:
                z = self._z(seed, b, w)
                self._view(block).add_(z, alpha=self.eps)  # restore θ
                grads[block.param].view(-1)[block.start:block.stop] = z.mul_(c)
            else:
                self._view(block).add_(self._z(last, b, w), alpha=self.eps)  # restore θ
                self._estimate_block(pairs, b, w, grads[block.param].view(-1)[block.start:block.stop])

        self._for_blocks(one)
        index = 0  # self._params lists the trainable parameters group by group, in order
        for group in self.param_groups:
            params, group_grads, exp_avgs, exp_avg_sqs, steps = [], [], [], [], []
            for p in group["params"]:
                if not p.requires_grad:
                    continue
                grad = grads[index]
                index += 1
                if grad is None:  # float16/bfloat16: done above
                    continue
                group_grads.append(grad)
                state = self.state[p]
                if not state:
                    state.update(self._new_state(p))
                params.append(p.detach())
                exp_avgs.append(state["exp_avg"])
                exp_avg_sqs.append(state["exp_avg_sq"])
                steps.append(state["step"])
            if params:
                adam_functional(params, group_grads, exp_avgs, exp_avg_sqs, [], steps, foreach=False,
                                amsgrad=False, beta1=beta1, beta2=beta2, lr=group["lr"],
                                weight_decay=group["weight_decay"], eps=self.delta, maximize=False)

    def _checked_param_state(self, p: torch.Tensor, entry: dict, where: str) -> dict:
        """None (before the first step) or step, exp_avg, exp_avg_sq (float32 for low-precision parameters)."""
        if not entry:
            return {}
        checks.keys(entry, where, "the state", ("step", "exp_avg", "exp_avg_sq"))
        dtype = compute_dtype(p.dtype)
        step = checks.tensor(entry["step"], f"{where}: 'step'", None, torch.float32, torch.device("cpu"), low=0.0)
        if not float(step).is_integer():
            raise ValueError(f"{where}: 'step' is {float(step)}; allowed: a whole number >= 0")
        return {"step": step.clone(),
                "exp_avg": checks.tensor(entry["exp_avg"], f"{where}: 'exp_avg'", p, dtype, p.device),
                "exp_avg_sq": checks.tensor(entry["exp_avg_sq"], f"{where}: 'exp_avg_sq'", p, dtype, p.device,
                                            low=0.0)}

    def _check_state_coverage(self, state: dict, where: str) -> None:
        if state and len(state) != len(self._params):
            raise ValueError(f"{where}: {len(state)} of the {len(self._params)} trained parameters have moments; "
                             "allowed: all of them (after a step) or none (before the first)")
