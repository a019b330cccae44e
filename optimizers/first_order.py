"""First-order Adam and AdamW behind the same ``step(closure)`` contract as the ZO optimizers.

Kingma and Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015; Loshchilov and Hutter,
"Decoupled Weight Decay Regularization", ICLR 2019. These are ``torch.optim.Adam``/``AdamW`` with
one difference: ``step(closure)`` calls ``zero_grad`` and ``backward`` itself, so the closure only
computes the loss and callers never branch on the optimizer's order. One step costs 1 forward pass
and 1 backward (about 2 forward-equivalents where compute is compared).

float16/bfloat16 parameters: torch's Adam keeps m and v in the parameter's dtype, where its eps = 1e-8
rounds to 0 and g² underflows (0/0: NaN). Here such parameters keep m and v in float32 (8 bytes per
element, as ``state_bytes`` counts) and torch's own update runs on a float32 copy of the parameter and
its gradient (one parameter at a time), written back with one rounding. Other parameters go through
torch's update unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any, ClassVar

import torch

from . import state_checks as checks
from .base import LOW_PRECISION, check_loss
from .specs import BETA1, BETA2, DELTA, LR, WEIGHT_DECAY, HyperSpec, validate_betas
from .torch_compat import adam_functional, profile_hook_step, unhooked_step

_ADAM_SPECS = {s.name: s for s in (LR, replace(BETA1, default=0.9), replace(BETA2, default=0.999),
                                   replace(DELTA, help="δ added to sqrt(v) in the denominator (torch's eps)."),
                                   WEIGHT_DECAY)}


class _FirstOrderMixin:
    zeroth_order: ClassVar[bool] = False
    forward_passes_per_step: ClassVar[int] = 1
    hyperparameters: ClassVar[dict[str, HyperSpec]] = _ADAM_SPECS
    profile_hook_step = staticmethod(profile_hook_step)

    def _check(self, lr: float, betas: tuple[float, float], eps: float, weight_decay: float) -> None:
        specs, name = self.hyperparameters, type(self).__name__
        specs["lr"].validate(lr, name)
        validate_betas(betas, specs, name)
        specs["delta"].validate(eps, name)
        specs["weight_decay"].validate(weight_decay, name)
        self.forward_passes = 0
        self.steps = 0

    def step(self, closure: Callable[[], Any] | None = None) -> torch.Tensor:  # type: ignore[override]
        """zero_grad, loss = closure(), backward, Adam update. Returns the loss (detached)."""
        name = type(self).__name__
        if closure is None:
            raise ValueError(f"{name}.step needs a closure that returns the loss")
        with torch.enable_grad():
            # zero_grad(set_to_none=True) without its profiler scope (~20 µs: much of a 2-D step)
            for group in self.param_groups:  # type: ignore[attr-defined]
                for p in group["params"]:
                    p.grad = None
            loss = closure()
            self.forward_passes += 1
            value = check_loss(loss, f"{name} step {self.steps}", "The parameters were not changed.")
            if not (isinstance(loss, torch.Tensor) and loss.requires_grad):
                raise ValueError(f"{name} step {self.steps}: the loss does not depend on the parameters "
                                 "through autograd (was it computed under torch.no_grad?)")
            loss.reshape(()).backward()
        # torch's own update, without torch's step wrapper: once any torch.optim.Adam exists in the
        # process, torch has wrapped Adam.step too, and calling it would run the hooks a second time.
        update = unhooked_step(super().step)  # type: ignore[misc]
        low = [(group, p) for group in self.param_groups for p in group["params"]  # type: ignore[attr-defined]
               if p.grad is not None and p.dtype in LOW_PRECISION]
        grads = [p.grad for _, p in low]
        for _, p in low:
            p.grad = None  # torch's update skips parameters without a gradient
        try:
            update(self)
        finally:
            for (_, p), grad in zip(low, grads):
                p.grad = grad
        for group, p in low:
            self._low_precision_update(group, p)
        self.steps += 1
        return value

    def _low_precision_update(self, group: dict, p: torch.Tensor) -> None:
        """torch's Adam/AdamW update of one float16/bfloat16 parameter, on float32 copies, float32 state."""
        state = self.state[p]  # type: ignore[attr-defined]
        if not state:
            state.update(_float32_state(p, group["amsgrad"]))
        theta, grad = p.detach().float(), p.grad.float()
        adam_functional([theta], [grad], [state["exp_avg"]], [state["exp_avg_sq"]],
                        [state["max_exp_avg_sq"]] if group["amsgrad"] else [], [state["step"]], foreach=False,
                        decoupled_weight_decay=group.get("decoupled_weight_decay", False),
                        amsgrad=group["amsgrad"], beta1=group["betas"][0], beta2=group["betas"][1],
                        lr=group["lr"], weight_decay=group["weight_decay"], eps=group["eps"],
                        maximize=group["maximize"])
        p.detach().copy_(theta)

    @classmethod
    def passes_per_step(cls, num_directions: int = 1) -> int:
        """One forward pass (and one backward) a step."""
        return 1

    @property
    def history(self) -> list[tuple[int, float]]:
        """First-order methods use no random directions: always empty."""
        return []

    def state_dict(self) -> dict[str, Any]:
        sd = super().state_dict()  # type: ignore[misc]
        sd["first_order"] = {"steps": self.steps, "forward_passes": self.forward_passes}
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """torch's ``load_state_dict``, after checking the state: an Adam/AdamW state (not a ZO one) over
        the same groups, valid lr/betas/eps/weight decay in every group, counters that are integers
        >= 0, finite parameter-shaped moments. Nothing changes unless all of it is valid. Moments of
        float16/bfloat16 parameters stay float32 (torch's loader would cast them to the parameter's dtype).
        """
        name = type(self).__name__
        where = f"{name}.load_state_dict"
        if not isinstance(state_dict, Mapping):
            raise ValueError(f"{where}: expected the dict that state_dict() returns, got {checks.short(state_dict)}")
        state_dict = dict(state_dict)
        if "zeroth_order" in state_dict:
            raise ValueError(f"{where}: this is a zeroth-order optimizer's state, not {name}'s")
        checks.keys(state_dict, where, "the state dict", ("state", "param_groups"), ("first_order",))
        counts = checks.keys(state_dict.pop("first_order", {"steps": 0, "forward_passes": 0}), where,
                             "'first_order'", ("steps", "forward_passes"))
        steps = checks.count(counts["steps"], where, "steps")
        forward_passes = checks.count(counts["forward_passes"], where, "forward_passes")
        specs = dict(self.hyperparameters) | {"eps": replace(self.hyperparameters["delta"], name="eps")}
        current = self.param_groups  # type: ignore[attr-defined]
        saved_groups, ids = checks.groups(state_dict["param_groups"], current, specs,
                                          ("lr", "betas", "eps", "weight_decay"), where)
        for i, (group, saved) in enumerate(zip(current, saved_groups)):
            for flag in _FLAGS:  # torch's switches: fixed when the optimizer is built, never in a state
                if flag in group and flag in saved and saved[flag] is not group[flag]:
                    raise ValueError(f"{where}: param group {i}: {flag}={checks.short(saved.get(flag))} differs from "
                                     f"this optimizer's; allowed: {group[flag]!r}")
        entries = checks.state_entries(state_dict["state"], ids, where)
        params = [p for g in current for p in g["params"]]
        float32 = {}
        for pid, p in zip(ids, params):
            entry = entries.get(pid)
            if not entry:
                continue
            here = f"{where}: state of parameter {pid}"
            checks.keys(entry, here, "the state", ("step", "exp_avg", "exp_avg_sq"), ("max_exp_avg_sq",))
            checks.tensor(entry["step"], f"{here}: 'step'", None, torch.float32, torch.device("cpu"), low=0.0)
            dtype = torch.float32 if p.dtype in LOW_PRECISION else p.dtype
            moments = {key: checks.tensor(entry[key], f"{here}: {key!r}", p, dtype, p.device,
                                          low=None if key == "exp_avg" else 0.0)
                       for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq") if key in entry}
            if p.dtype in LOW_PRECISION:
                float32[p] = moments
        super().load_state_dict(state_dict)  # type: ignore[misc]
        for p, moments in float32.items():
            self.state[p].update(moments)  # type: ignore[attr-defined]
        self.steps, self.forward_passes = steps, forward_passes


_FLAGS = ("amsgrad", "maximize", "foreach", "capturable", "differentiable", "fused", "decoupled_weight_decay")


def _float32_state(p: torch.Tensor, amsgrad: bool) -> dict[str, torch.Tensor]:
    """Adam's initial state for a float16/bfloat16 parameter, with m and v in float32."""
    state = {"step": torch.tensor(0.0, dtype=torch.float32),
             "exp_avg": torch.zeros_like(p, dtype=torch.float32, memory_format=torch.preserve_format),
             "exp_avg_sq": torch.zeros_like(p, dtype=torch.float32, memory_format=torch.preserve_format)}
    if amsgrad:
        state["max_exp_avg_sq"] = torch.zeros_like(p, dtype=torch.float32, memory_format=torch.preserve_format)
    return state


class Adam(_FirstOrderMixin, torch.optim.Adam):
    """``torch.optim.Adam`` whose ``step(closure)`` does zero_grad and backward itself.

    ``seed`` and ``seed_budget`` are accepted for a uniform interface and have no effect.
    """

    def __init__(self, params: Iterable[torch.Tensor] | Iterable[dict], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0,
                 seed: int = 0, seed_budget: int | None = None) -> None:
        self._check(lr, betas, eps, weight_decay)
        torch.optim.Adam.__init__(self, params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)


class AdamW(_FirstOrderMixin, torch.optim.AdamW):
    """``torch.optim.AdamW`` (decoupled weight decay) whose ``step(closure)`` does backward itself."""

    hyperparameters = _ADAM_SPECS | {"weight_decay": replace(WEIGHT_DECAY, default=0.01)}

    def __init__(self, params: Iterable[torch.Tensor] | Iterable[dict], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.01,
                 seed: int = 0, seed_budget: int | None = None) -> None:
        self._check(lr, betas, eps, weight_decay)
        torch.optim.AdamW.__init__(self, params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)
