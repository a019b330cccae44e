"""Starting values for the 2-D pages: the Playground's landing setting and its learning rates.

The registry's defaults are tuned for LLM fine-tuning (lr 1e-3). The Playground opens on lesson 1's
setting (the paper's toy protocol, ``app/lessons.py``): Adam at a fixed lr, and MeZO's and AdaMeZO's
lrs from the rule that lesson states (path length matched to 1.5 × Adam's), read from
``app/lesson_lrs.json``, which ``python -m app.lessons calibrate`` writes and the lessons check verifies.
The other optimizers start from their registry entry's ``lr_2d`` (an lr that moves visibly in a few
hundred steps). Everything else comes from the registry.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from optimizers import OPTIMIZERS

LESSON_LRS_FILE = Path(__file__).resolve().with_name("lesson_lrs.json")


@lru_cache(maxsize=1)
def _lesson_lrs_text() -> str:
    try:
        return LESSON_LRS_FILE.read_text(encoding="utf-8")
    except OSError:
        return "{}"


def reload_lesson_lrs() -> None:
    """Forget the cached ``lesson_lrs.json`` (after ``python -m app.lessons calibrate`` wrote it)."""
    _lesson_lrs_text.cache_clear()


def load_lesson_lrs() -> dict:
    """The rule-derived lrs of the lessons (a fresh copy): lesson slug -> subject -> {"lr", "rule", ...}."""
    return json.loads(_lesson_lrs_text())


#: The Playground's landing setting = lesson 1's: Rosenbrock from its usual start, 1000 steps, a fresh
#: random direction every step, 8 seeds, Adam at lr 0.03 (it reaches the minimum's neighbourhood).
LANDING: dict[str, str] = {"ls": "rosenbrock", "steps": "1000", "budget": "none", "repeats": "8",
                           "opts": "adam,mezo,adamezo", "adam.lr": "0.03", "fair": "off"}


def _landing_lr(name: str, fallback: float) -> float:
    return float(load_lesson_lrs().get("paper", {}).get(name, {}).get("lr", fallback))


def _start_lr(name: str) -> float:
    """An optimizer's starting lr on the 2-D pages: lesson 1's calibrated lr where the lesson calibrates it
    (MeZO, AdaMeZO), lesson 1's fixed lr for Adam, else the registry's ``lr_2d``."""
    if name == "adam":
        return float(LANDING["adam.lr"])
    return _landing_lr(name, OPTIMIZERS[name].lr_2d)


#: Per-optimizer starting hyperparameters on the 2-D pages (only what differs from the registry's
#: defaults): the starting lr and the entry's ``hyper_2d``.
DEMO_HYPER: dict[str, dict[str, object]] = {
    name: {"lr": _start_lr(name), **entry.hyper_2d} for name, entry in OPTIMIZERS.items()
}


def demo_defaults(name: str) -> dict[str, object]:
    """The registry defaults of ``name`` with the 2-D starting values on top."""
    return OPTIMIZERS[name].defaults() | DEMO_HYPER.get(name, {})


PLAYGROUND_DEFAULT = {"ls": LANDING["ls"], "opts": LANDING["opts"].split(","), "steps": int(LANDING["steps"]),
                      "budget": None if LANDING["budget"] == "none" else int(LANDING["budget"]),
                      "repeats": int(LANDING["repeats"])}
#: The Compare page starts lighter: one run per value.
COMPARE_DEFAULT = {"ls": "rosenbrock", "steps": 500, "budget": None, "repeats": 1}
#: Values the Compare page offers for each sweepable hyperparameter (a start; any list can be typed). A
#: hyperparameter not listed here gets values spread over its spec's slider range (:func:`_spec_values`).
SWEEP_DEFAULTS: dict[str, str] = {
    "betas": "0.7/0.9, 0.7/0, 0/0",
    "beta1": "0, 0.5, 0.7, 0.9",
    "beta2": "0, 0.5, 0.9, 0.99",
    "horizon": "1, 5, 10, 30",
    "lr": "0.01, 0.03, 0.1, 0.3",
    "eps": "0.0001, 0.001, 0.01, 0.1",
    "seed_budget": "1, 2, 4, none",
    "warmup": "partial, mezo",
    "hessian_smooth": "0, 1e-8, 1e-4, 1e-2",
    "weight_decay": "0, 0.01, 0.1",
    "delta": "1e-8, 1e-4, 1e-2",
    "distribution": "gaussian, rademacher",
    "num_directions": "1, 4, 16",
}


def _spec_values(name: str) -> str:
    """Three or four values of a registry hyperparameter for the Compare page: its choices, or its slider
    range (log-spaced for a log-scale spec)."""
    spec = next(e.specs[name] for e in OPTIMIZERS.values() if name in e.specs)
    if spec.kind == "choice":
        return ", ".join(spec.choices)
    lo, hi = spec.ui_low, spec.ui_high
    if spec.log and lo and lo > 0:
        values = [lo * (hi / lo) ** (i / 3) for i in range(4)]
    else:
        values = [lo + (hi - lo) * i / 3 for i in range(4)]
    if spec.kind == "int":
        return ", ".join(str(v) for v in dict.fromkeys(int(round(v)) for v in values))
    return ", ".join(f"{v:.2g}" for v in values)


SWEEP_DEFAULTS |= {name: _spec_values(name) for entry in OPTIMIZERS.values() for name in entry.sweepable
                   if name not in SWEEP_DEFAULTS}

