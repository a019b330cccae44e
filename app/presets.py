"""Starting values for the 2-D pages and the lessons' exact settings.

The registry's defaults are tuned for LLM fine-tuning (lr 1e-3); on the 2-D landscapes the app starts
from learning rates that move visibly in a few hundred steps. Everything else comes from the registry.
"""

from __future__ import annotations

from pathlib import Path

from optimizers import OPTIMIZERS

#: Per-optimizer starting hyperparameters on the 2-D pages (only what differs from the registry).
DEMO_HYPER: dict[str, dict[str, object]] = {
    "mezo": {"lr": 0.002},
    "adamezo": {"lr": 0.05},
    "zo-adam": {"lr": 0.1},
    "hizoo": {"lr": 0.002},
    "adam": {"lr": 0.1},
    "adamw": {"lr": 0.1, "weight_decay": 0.0},
}


def demo_defaults(name: str) -> dict[str, object]:
    """The registry defaults of ``name`` with the 2-D starting values on top."""
    return OPTIMIZERS[name].defaults() | DEMO_HYPER.get(name, {})


PLAYGROUND_DEFAULT = {"ls": "rosenbrock", "opts": ["mezo", "adamezo", "adam"], "steps": 500}
#: Values the Compare page offers for each sweepable hyperparameter (a start; any list can be typed).
SWEEP_DEFAULTS: dict[str, str] = {
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
}

LESSON_DIR = Path(__file__).resolve().parent.parent / "assets" / "lessons"


def lesson_text(slug: str) -> str:
    """The lesson's markdown (``assets/lessons/SLUG.md``), or a short note if it is missing."""
    path = LESSON_DIR / f"{slug}.md"
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return f"*(lesson text {path.name} is missing)*"


#: Lessons: slug, title, the page whose setting the button loads, and that setting as URL values.
LESSONS: list[dict] = [
    {
        "slug": "curvature", "title": "1. Curvature: MeZO zig-zags, AdaMeZO adapts", "page": "playground",
        "params": {"ls": "quadratic", "kappa": "100", "angle": "0", "x0": "-2.5", "y0": "1.5", "steps": "300",
                   "seed": "0", "budget": "none", "repeats": "5", "fair": "off", "opts": "mezo,adamezo",
                   "mezo.lr": "0.012", "adamezo.lr": "0.03"},
    },
    {
        "slug": "momentum", "title": "2. Rosenbrock and momentum (β1)", "page": "compare",
        "params": {"ls": "rosenbrock", "x0": "-1.5", "y0": "2", "opt": "adamezo", "param": "beta1",
                   "values": "0, 0.5, 0.7, 0.9", "steps": "500", "seed": "0", "budget": "none", "repeats": "3",
                   "adamezo.lr": "0.05"},
    },
    {
        "slug": "seed-budget", "title": "3. The seed budget: few directions", "page": "compare",
        "params": {"ls": "rotated-quadratic", "kappa": "100", "angle": "45", "opt": "mezo", "param": "seed_budget",
                   "values": "1, 2, 4, none", "steps": "300", "seed": "0", "budget": "none", "repeats": "3",
                   "mezo.lr": "0.008"},
    },
    {
        "slug": "rotated", "title": "4. Where AdaMeZO does not win: a rotated valley", "page": "playground",
        "params": {"ls": "rotated-quadratic", "kappa": "100", "angle": "45", "steps": "300", "seed": "0",
                   "budget": "none", "repeats": "5", "fair": "off", "opts": "mezo,adamezo,zo-adam",
                   "mezo.lr": "0.008", "adamezo.lr": "0.03", "zo-adam.lr": "0.1"},
    },
    {
        "slug": "memory", "title": "5. Where the memory goes", "page": "memory",
        "params": {},
    },
]
