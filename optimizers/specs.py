"""Hyperparameter specifications: one source of truth for defaults, ranges, help and validation.

Every optimizer class declares its hyperparameters as :class:`HyperSpec` objects. The registry, the
app's controls, the command line's flags and the optimizers' own argument checks all read them, so
a range is written down exactly once.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["float", "int", "choice"]


@dataclass(frozen=True)
class HyperSpec:
    """One hyperparameter: its default, the values it allows, and how a UI should present it.

    ``low``/``high`` bound the allowed values (``None`` means unbounded); ``low_open``/``high_open``
    exclude the bound itself. ``ui_low``/``ui_high`` are the suggested slider range, narrower than the
    allowed one; ``log`` says a slider should be logarithmic. ``optional`` allows ``None``.
    """

    name: str
    default: Any
    kind: Kind = "float"
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    log: bool = False
    choices: tuple[str, ...] = ()
    ui_low: float | None = None
    ui_high: float | None = None
    optional: bool = False
    help: str = ""

    def allowed(self) -> str:
        """The allowed values, as words for an error message or a tooltip."""
        if self.kind == "choice":
            return "one of " + ", ".join(repr(c) for c in self.choices)
        noun = "an integer" if self.kind == "int" else "a number"
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.low_open else '>='} {self.low:g}")
        if self.high is not None:
            parts.append(f"{'<' if self.high_open else '<='} {self.high:g}")
        text = f"{noun} {' and '.join(parts)}" if parts else f"any finite {noun.split()[1]}"
        if self.optional:
            text += ", or None"
        return text

    def validate(self, value: Any, owner: str = "") -> Any:
        """Return ``value`` converted to this spec's type, or raise ``ValueError`` naming it."""
        where = f"{owner}: " if owner else ""

        def fail(why: str) -> ValueError:
            return ValueError(f"{where}invalid {self.name}={value!r} ({why}); allowed: {self.allowed()}")

        if value is None:
            if self.optional:
                return None
            raise fail("a value is required")
        if self.kind == "choice":
            if not isinstance(value, str) or value not in self.choices:
                raise fail("not a known option")
            return value
        if isinstance(value, bool):
            raise fail("a boolean is not a number")
        if self.kind == "int":
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            elif isinstance(value, numbers.Integral):
                value = int(value)
            else:
                raise fail("not an integer")
        else:
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise fail("not a number") from None
            if not math.isfinite(value):
                raise fail("not finite")
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            raise fail("too small")
        if self.high is not None and (value > self.high or (self.high_open and value == self.high)):
            raise fail("too large")
        return value


def validate_betas(betas: Any, specs: dict[str, HyperSpec], owner: str) -> tuple[float, float]:
    """The pair (beta1, beta2), each checked by its spec (``beta1``/``beta2`` in ``specs``), or
    ``ValueError`` naming what was wrong. The one betas check of the library."""
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        shown = repr(betas)
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        raise ValueError(f"{owner + ': ' if owner else ''}invalid betas={shown}; allowed: a pair (beta1, beta2), "
                         "each in [0, 1)")
    return specs["beta1"].validate(betas[0], owner), specs["beta2"].validate(betas[1], owner)


def validate_all(specs: dict[str, HyperSpec], values: dict[str, Any], owner: str) -> dict[str, Any]:
    """Validate several values against their specs; unknown names raise ``ValueError``."""
    out = {}
    for name, value in values.items():
        if name not in specs:
            raise ValueError(
                f"{owner}: unknown hyperparameter {name!r}; allowed: {', '.join(sorted(specs))}"
            )
        out[name] = specs[name].validate(value, owner)
    return out


# Specs shared by several optimizers.
LR = HyperSpec("lr", 1e-3, low=0.0, low_open=True, log=True, ui_low=1e-6, ui_high=1.0,
               help="Learning rate η.")
EPS = HyperSpec("eps", 1e-3, low=0.0, low_open=True, log=True, ui_low=1e-6, ui_high=1e-1,
                help="SPSA perturbation scale ε: θ ± ε z.")
WEIGHT_DECAY = HyperSpec("weight_decay", 0.0, low=0.0, ui_low=0.0, ui_high=0.1,
                         help="Weight decay λ: adds λθ to the update.")
BETA1 = HyperSpec("beta1", 0.7, low=0.0, high=1.0, high_open=True, ui_low=0.0, ui_high=0.99,
                  help="First-moment decay β1 (0 switches momentum off).")
BETA2 = HyperSpec("beta2", 0.9, low=0.0, high=1.0, high_open=True, ui_low=0.0, ui_high=0.999,
                  help="Second-moment decay β2 (0 switches the second moment off).")
DELTA = HyperSpec("delta", 1e-8, low=0.0, low_open=True, log=True, ui_low=1e-12, ui_high=1e-2,
                  help="δ added to sqrt(v) in the denominator.")
SEED = HyperSpec("seed", 0, kind="int", low=0, high=2**63 - 1, ui_low=0, ui_high=1000,
                 help="Seed of the optimizer's own random directions.")
SEED_BUDGET = HyperSpec("seed_budget", None, kind="int", low=1, optional=True, log=True,
                        ui_low=1, ui_high=1000,
                        help="Size of the pool of random directions; None draws a fresh one each step.")
CHUNK_SIZE = HyperSpec("chunk_size", 2**20, kind="int", low=1, log=True, ui_low=1, ui_high=2**24,
                       help="Largest block of a direction generated at once (bounds temporaries).")
DISTRIBUTION = HyperSpec("distribution", "gaussian", kind="choice", choices=("gaussian", "rademacher"),
                         help="Law of z: N(0, I), or ±1 (removes AdaMeZO's per-coordinate adaptivity).")

NUM_DIRECTIONS = HyperSpec("num_directions", 1, kind="int", low=1, ui_low=1, ui_high=16,
                           help="q: random directions averaged per step (q-SPSA: 2q forward passes; 1 is plain "
                                "two-point SPSA).")

WORKERS = HyperSpec("workers", None, kind="int", low=1, optional=True, ui_low=1, ui_high=16,
                    help="Threads that generate direction blocks (None: one per torch CPU thread for large "
                         "CPU models; any value is capped at the blocks and the CPU cores); the results do not "
                         "depend on it.")

ZO_COMMON = {s.name: s for s in (SEED, SEED_BUDGET, CHUNK_SIZE, DISTRIBUTION, NUM_DIRECTIONS, WORKERS)}
# Knobs that change speed or memory, never the mathematics (UIs may tuck them away).
EXECUTION_ONLY = ("chunk_size", "workers")
