"""The optimizer registry: short names -> classes and hyperparameter specs, and ``make_optimizer``.

The app's controls, the command line's flags and validation are all generated from ``OPTIMIZERS``, and
everything else about an optimizer (its label, colour slot, starting lrs, what may be swept, its test
lrs, its paper's Table 1 columns) is on its entry: adding an optimizer is its module, one entry here,
and its tests.
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
from .helene import HELENE
from .hizoo import HiZOO
from .mezo import MeZO
from .specs import HyperSpec, validate_all, validate_betas
from .zo_adam import ZOAdam
from .zo_adamu import ZOAdaMU


@dataclass(frozen=True)
class OptimizerEntry:
    """Everything about one optimizer that the rest of the project reads: nothing else names it.

    - ``cls`` and ``specs`` (from ``cls.hyperparameters``): the class and every hyperparameter's
      default, range, scale and help (the app's controls, the command line's flags, validation).
    - ``title`` (the label everywhere), ``summary`` (one line), ``paper`` (the citation).
    - ``colour_slot``: an index into the app's palette (``app.figures.PALETTE``), fixed per optimizer.
    - ``lr_2d`` and ``hyper_2d``: the starting lr and other values on the 2-D pages (the lessons'
      calibrated lrs in ``app/lesson_lrs.json`` win for the optimizers they calibrate).
    - ``llm_hyper``: the LLM demo's starting values (the command line's and the app's LLM page).
    - ``sweepable``: what the Compare page may sweep for it (``betas`` sweeps the pair).
    - ``test_lrs``: the lr of the test battery on the ill-conditioned quadratic and the MLP.
    - ``step_cost_2d``: one step on a 2-D landscape, in MeZO steps (the app's work budget).
    - ``first_moment``/``second_moment``: the paper's Table 1 columns (kept in memory, recomputed, or
      none); parameter memory and forward passes are measured from the class (``state_bytes``,
      :meth:`forward_passes`).
    """

    name: str
    title: str
    cls: type
    summary: str
    colour_slot: int
    lr_2d: float
    test_lrs: Mapping[str, float]
    paper: str = ""
    hyper_2d: Mapping[str, Any] = field(default_factory=dict)
    llm_hyper: Mapping[str, Any] = field(default_factory=dict)
    sweepable: tuple[str, ...] = ()
    step_cost_2d: float = 1.0
    first_moment: str = "none"
    second_moment: str = "none"
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


def _entry(name: str, title: str, cls: type, summary: str, **facts: Any) -> OptimizerEntry:
    entry = OptimizerEntry(name, title, cls, summary, specs=dict(cls.hyperparameters), **facts)
    unknown = [k for k in (*entry.sweepable, *entry.hyper_2d, *entry.llm_hyper)
               if k not in entry.specs and k != "betas"]
    if unknown:
        raise ValueError(f"registry entry {name!r} names unknown hyperparameter(s) {', '.join(unknown)}; "
                         f"allowed: {', '.join(entry.specs)}")
    return entry


#: What every zeroth-order optimizer may sweep on the Compare page, besides its own hyperparameters.
_ZO_SWEEP = ("lr", "eps", "weight_decay", "distribution", "num_directions")
_ADAM_SWEEP = ("betas", "beta1", "beta2", "lr", "delta", "weight_decay")

# LLM demo lrs (``llm_hyper``): AdaMeZO runs with its defaults; the others use the lr that did best in the
# README's runs (MeZO: best dev loss after 1000 steps on the grid 1e-4/3e-4/1e-3/3e-3 for 3 seeds, 3e-3
# diverges; HiZOO: best dev loss after 500 steps of 3e-4/1e-3/3e-3, seed 0, 3e-3 blows up; HELENE and
# ZO-AdaMU: best dev loss after 300 steps, seed 0, of 1e-4/3e-4/1e-3 (HELENE: 0.301, 0.051, 0.257) and
# 3e-4/1e-3/3e-3 (ZO-AdaMU: 0.285, 0.125, 0.228)).
OPTIMIZERS: dict[str, OptimizerEntry] = {
    e.name: e for e in (
        _entry("mezo", "MeZO", MeZO, "Zeroth-order SGD with regenerated directions (Malladi et al. 2023).",
               paper="Malladi et al., Fine-Tuning Language Models with Just Forward Passes, NeurIPS 2023",
               colour_slot=0, lr_2d=6e-4, llm_hyper={"lr": 1e-3}, sweepable=_ZO_SWEEP,
               test_lrs={"quadratic": 3e-4, "mlp": 3e-2}),
        _entry("adamezo", "AdaMeZO", AdaMeZO,
               "Adam-style moments recomputed from the last K (seed, c) pairs; no per-parameter state.",
               paper="Cai, Chen and Zhu, AdaMeZO: Adam-style Zeroth-Order Optimizer for LLM Fine-tuning "
                     "Without Maintaining the Moments, 2026",
               colour_slot=1, lr_2d=0.012, sweepable=("betas", "beta1", "beta2", "horizon", *_ZO_SWEEP, "warmup", "delta"),
               test_lrs={"quadratic": 3e-2, "mlp": 3e-2}, first_moment="recomputed", second_moment="recomputed"),
        _entry("zo-adam", "ZO-Adam", ZOAdam, "Adam fed SPSA estimates, moments stored (memory 3P).",
               paper="Zhang et al., Revisiting Zeroth-Order Optimization for Memory-Efficient LLM Fine-Tuning: "
                     "A Benchmark, ICML 2024",
               colour_slot=2, lr_2d=0.1, llm_hyper={"lr": 1e-3}, step_cost_2d=1.5,
               sweepable=("betas", "beta1", "beta2", *_ZO_SWEEP, "delta"),
               test_lrs={"quadratic": 3e-2, "mlp": 3e-2}, first_moment="stored", second_moment="stored"),
        _entry("hizoo", "HiZOO", HiZOO, "Diagonal-Hessian-preconditioned ZO, 3 forward passes (Zhao et al. 2024).",
               paper="Zhao et al., Second-Order Fine-Tuning without Pain for LLMs: A Hessian Informed "
                     "Zeroth-Order Optimizer, 2024",
               colour_slot=3, lr_2d=0.002, llm_hyper={"lr": 1e-3}, step_cost_2d=1.7,
               sweepable=(*_ZO_SWEEP, "hessian_smooth"), test_lrs={"quadratic": 3e-4, "mlp": 3e-2},
               second_moment="stored (diagonal Hessian)"),
        _entry("helene", "HELENE", HELENE,
               "Annealed momentum over a clipped diagonal-Hessian preconditioner (Zhao et al. 2024a).",
               paper="Zhao et al., HELENE: Hessian Layer-wise Clipping and Gradient Annealing for Accelerating "
                     "Fine-tuning LLM with Zeroth-order Optimization, arXiv:2411.10696, 2024",
               colour_slot=6, lr_2d=0.03, llm_hyper={"lr": 3e-4}, step_cost_2d=1.3,
               sweepable=("betas", "beta1", "beta2", *_ZO_SWEEP, "hessian_clip", "hessian_interval", "anneal_steps"),
               test_lrs={"quadratic": 0.3, "mlp": 1e-2}, first_moment="stored",
               second_moment="stored (clipped diagonal Hessian)"),
        _entry("zo-adamu", "ZO-AdaMU", ZOAdaMU,
               "The perturbation carries the momentum; its uncertainty scales the step (Jiang et al. 2024).",
               paper="Jiang et al., ZO-AdaMU Optimizer: Adapting Perturbation by the Momentum and Uncertainty in "
                     "Zeroth-Order Optimization, AAAI 2024",
               colour_slot=7, lr_2d=1e-3, llm_hyper={"lr": 1e-3}, step_cost_2d=1.8,
               sweepable=("betas", "beta1", "beta2", *_ZO_SWEEP, "uncertainty", "anneal_steps"),
               test_lrs={"quadratic": 3e-4, "mlp": 0.1}, first_moment="stored (on the perturbation)",
               second_moment="recomputed (of the perturbation)"),
        _entry("adam", "Adam (first order)", Adam, "torch.optim.Adam with backward: the first-order reference.",
               paper="Kingma and Ba, Adam: A Method for Stochastic Optimization, ICLR 2015",
               colour_slot=4, lr_2d=0.03, llm_hyper={"lr": 1e-3}, step_cost_2d=2.2, sweepable=_ADAM_SWEEP,
               test_lrs={"quadratic": 1e-2, "mlp": 1e-2}, first_moment="stored", second_moment="stored"),
        _entry("adamw", "AdamW (first order)", AdamW, "torch.optim.AdamW with backward and decoupled weight decay.",
               paper="Loshchilov and Hutter, Decoupled Weight Decay Regularization, ICLR 2019",
               colour_slot=5, lr_2d=0.03, hyper_2d={"weight_decay": 0.0}, llm_hyper={"lr": 1e-3}, step_cost_2d=2.2,
               sweepable=_ADAM_SWEEP, test_lrs={"quadratic": 1e-2, "mlp": 1e-2}, first_moment="stored",
               second_moment="stored"),
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

    ``betas=(b1, b2)`` is accepted as well as ``beta1``/``beta2``. ``process_group`` (zeroth-order
    optimizers only; not a hyperparameter) averages the losses over a ``torch.distributed`` group. First-order optimizers accept
    ``seed`` and ``seed_budget`` and ignore them, so callers never branch on the optimizer's order.
    """
    entry = get_entry(name)
    hyper = dict(hyper)
    group = hyper.pop("process_group", None)
    if group is not None and not entry.zeroth_order:
        raise ValueError(f"{entry.title}: process_group is for the zeroth-order optimizers (it averages their "
                         "losses over the ranks); a first-order optimizer runs data parallel under "
                         "torch.nn.parallel.DistributedDataParallel, which averages the gradients: give it none")
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
    if group is not None:
        kwargs["process_group"] = group
    return entry.cls(params, **kwargs)
