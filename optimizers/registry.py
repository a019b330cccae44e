"""The optimizer registry: short names -> classes and hyperparameter specs, and ``make_optimizer``.

The app's controls, the command line's flags and validation are all generated from ``OPTIMIZERS``.
Registry hyperparameters are flat scalars (``beta1``/``beta2`` rather than ``betas``; ``delta`` is
first-order Adam's ``eps``), so that every one of them can be a slider or a flag.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from .adamezo import AdaMeZO
from .base import state_bytes  # noqa: F401  (re-exported)
from .first_order import Adam, AdamW
from .hizoo import HiZOO
from .mezo import MeZO
from .specs import HyperSpec, validate_all, validate_betas
from .zo_adam import ZOAdam


@dataclass(frozen=True)
class OptimizerEntry:
    """One registry entry: the class, its hyperparameter specs and facts for UIs and reports."""

    name: str
    title: str
    cls: type
    summary: str
    specs: dict[str, HyperSpec] = field(default_factory=dict)

    @property
    def zeroth_order(self) -> bool:
        return self.cls.zeroth_order

    @property
    def forward_passes_per_step(self) -> int:
        """Forward passes of one step with the default settings (one direction)."""
        return self.cls.forward_passes_per_step

    def forward_passes(self, hyper: Mapping[str, Any] | None = None) -> int:
        """Forward passes of one step with these hyperparameters (2q with ``num_directions=q``, plus the
        method's extra ones; first order: 1)."""
        return self.cls.passes_per_step(int((hyper or {}).get("num_directions") or 1))

    def defaults(self) -> dict[str, Any]:
        return {name: spec.default for name, spec in self.specs.items()}


def _entry(name: str, title: str, cls: type, summary: str) -> OptimizerEntry:
    return OptimizerEntry(name, title, cls, summary, dict(cls.hyperparameters))


OPTIMIZERS: dict[str, OptimizerEntry] = {
    e.name: e for e in (
        _entry("mezo", "MeZO", MeZO, "Zeroth-order SGD with regenerated directions (Malladi et al. 2023)."),
        _entry("adamezo", "AdaMeZO", AdaMeZO,
               "Adam-style moments recomputed from the last K (seed, c) pairs; no per-parameter state."),
        _entry("zo-adam", "ZO-Adam", ZOAdam, "Adam fed SPSA estimates, moments stored (memory 3P)."),
        _entry("hizoo", "HiZOO", HiZOO, "Diagonal-Hessian-preconditioned ZO, 3 forward passes (Zhao et al. 2024)."),
        _entry("adam", "Adam (first order)", Adam, "torch.optim.Adam with backward: the first-order reference."),
        _entry("adamw", "AdamW (first order)", AdamW, "torch.optim.AdamW with backward and decoupled weight decay."),
    )
}


def get_entry(name: str) -> OptimizerEntry:
    """The registry entry for ``name``, or ``ValueError`` listing the known names."""
    try:
        return OPTIMIZERS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown optimizer {name!r}; allowed: {', '.join(OPTIMIZERS)}") from None


def make_optimizer(name: str, params: Iterable[torch.Tensor] | Iterable[dict], **hyper: Any) -> torch.optim.Optimizer:
    """Build any registered optimizer from flat hyperparameters, validated against its specs.

    ``betas=(b1, b2)`` is accepted as well as ``beta1``/``beta2``. First-order optimizers accept
    ``seed`` and ``seed_budget`` and ignore them, so callers never branch on the optimizer's order.
    """
    entry = get_entry(name)
    hyper = dict(hyper)
    if "betas" in hyper:
        betas = hyper.pop("betas")
        if "beta1" in hyper or "beta2" in hyper:
            raise ValueError(f"{entry.title}: give either betas or beta1/beta2, not both")
        if "beta1" not in entry.specs:
            raise ValueError(f"{entry.title}: unknown hyperparameter 'betas'; allowed: {', '.join(sorted(entry.specs))}")
        hyper["beta1"], hyper["beta2"] = validate_betas(betas, entry.specs, entry.title)
    if not entry.zeroth_order:
        hyper.pop("seed", None)
        hyper.pop("seed_budget", None)
    kwargs = validate_all(entry.specs, hyper, entry.title)
    if "beta1" in kwargs or "beta2" in kwargs:
        kwargs["betas"] = (kwargs.pop("beta1", entry.specs["beta1"].default),
                           kwargs.pop("beta2", entry.specs["beta2"].default))
    if not entry.zeroth_order and "delta" in kwargs:
        kwargs["eps"] = kwargs.pop("delta")
    return entry.cls(params, **kwargs)
