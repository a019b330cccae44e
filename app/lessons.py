"""Lessons as data: each lesson's setting, the rule that gives each of its learning rates, and its claims.

A lesson claims something a teacher can say in one sentence ("AdaMeZO ends at least 10× lower than
MeZO"), and states it as data: which runs, which measured number, which direction, by what margin. The
page's verdict and the check command are both produced from that claim and the measured numbers, so a
change to an optimizer, a default or a landscape that turns a lesson into its opposite fails the check
(the test suite runs it) instead of silently teaching the opposite::

    python -m app.lessons check --seeds 0-7      # every claim over seeds 0..7; exit 1 if one fails
    python -m app.lessons calibrate              # recompute every rule-derived lr into lesson_lrs.json

Learning rates are never picked by hand. Each zeroth-order lr comes from a stated rule, computed by the
engine on the calibration seeds 1000–1007 (apart from the seeds any claim is checked on):

- :class:`PathRule` (the paper's rule for its toy figures, Appendix B.5): Adam runs at a fixed lr and
  each zeroth-order lr is solved so that its median path is ``ratio`` × as long as Adam's
  (``landscapes.match_path_length``);
- :class:`GridRule`: the lr with the lowest median final loss on a log grid (``landscapes.tune_lr``);
- :class:`SameAs`: the lr another lesson's rule gave.

``calibrate`` writes the results to ``app/lesson_lrs.json``; ``check`` verifies every stored lr still
satisfies its rule (a path within 5 % of its target; a grid lr no worse than its grid neighbours) and
then evaluates every claim. This module imports no Streamlit.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import landscapes
from landscapes import Landscape, Trajectory, TrajectoryJob
from landscapes.inside import moment_snapshot, spsa_draws
from landscapes.metrics import line_offset, reversal_rate, valley_swing
from optimizers import OPTIMIZERS

from app import controls
from app.presets import LANDING, LESSON_LRS_FILE, load_lesson_lrs, reload_lesson_lrs

CALIBRATION_SEEDS = tuple(range(1000, 1008))
#: A stored path-rule lr passes the check while its median path is within this fraction of the target.
PATH_TOLERANCE = 0.05
LESSON_DIR = Path(__file__).resolve().parent.parent / "assets" / "lessons"


# --------------------------------------------------------------------------------- rules
@dataclass(frozen=True)
class PathRule:
    """The paper's rule: the median path over the calibration seeds is ``ratio`` × Adam's (Adam at
    ``adam_lr``, same landscape, start and steps)."""

    adam_lr: float
    ratio: float = 1.5

    def describe(self) -> str:
        return (f"path length matched to {self.ratio:g} × Adam's (Adam at lr {self.adam_lr:g}; median over "
                f"seeds {CALIBRATION_SEEDS[0]}–{CALIBRATION_SEEDS[-1]})")


@dataclass(frozen=True)
class GridRule:
    """The lr with the lowest median final loss over the calibration seeds on ``count`` log-spaced
    values from ``low`` to ``high``."""

    low: float
    high: float
    count: int

    @property
    def grid(self) -> list[float]:
        return landscapes.log_grid(self.low, self.high, self.count)

    def describe(self) -> str:
        return (f"best median final loss on a log grid of {self.count} lrs from {self.low:g} to {self.high:g} "
                f"(seeds {CALIBRATION_SEEDS[0]}–{CALIBRATION_SEEDS[-1]})")


@dataclass(frozen=True)
class SameAs:
    """The lr that lesson ``lesson``'s rule gave its subject ``subject``."""

    lesson: str
    subject: str

    def describe(self) -> str:
        lesson = LESSONS_BY_SLUG[self.lesson]
        rule = lesson.rules[self.subject]
        return f"as in lesson {lesson.number} ({rule.describe()})"


Rule = PathRule | GridRule | SameAs


# --------------------------------------------------------------------------------- claims
@dataclass(frozen=True)
class Metric:
    """A measured number: its words on the page, and how per-seed values are combined."""

    words: str
    fmt: Callable[[float], str] = lambda v: f"{v:.3g}"


def _bytes_text(v: float) -> str:
    return f"{int(v):,} B"


def _share(v: float) -> str:
    return f"{v:.0%}"


METRICS: dict[str, Metric] = {
    "final_loss": Metric("median final loss"),
    "distance": Metric("median distance from the minimum"),
    "end_gap": Metric("median distance from Adam's end point"),
    "swing": Metric("median swing across the valley floor"),
    "reversals": Metric("median share of steps that reverse across the valley", _share),
    "line_offset": Metric("largest distance from a straight line, per unit of path length",
                          lambda v: f"{v:.1e}"),
    "moment_gap": Metric("largest relative difference between rebuilt and stored moments", lambda v: f"{v:.1e}"),
    "mean_error": Metric("error of the average estimate, relative to ‖∇f‖", _share),
    "single_error": Metric("median error of a single estimate, relative to ‖∇f‖", _share),
    "state_bytes": Metric("optimizer state", _bytes_text),
}


@dataclass(frozen=True)
class Claim:
    """``a`` compared with ``b`` (or with ``margin`` alone) on ``metric``.

    ``relation``: ``"ratio"`` a ≥ margin × b; ``"within"`` a/b within [1/margin, margin]; ``"at_most"``
    a ≤ margin; ``"at_least"`` a ≥ margin. Per-seed values are combined by ``over`` (median or max);
    metrics that pool all seeds (``mean_error``) or have one value (``state_bytes``) ignore it.
    """

    metric: str
    a: str
    relation: str
    margin: float
    b: str | None = None
    over: str = "median"

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"unknown metric {self.metric!r}; allowed: {', '.join(METRICS)}")
        if self.relation not in ("ratio", "within", "at_most", "at_least"):
            raise ValueError(f"unknown relation {self.relation!r}")
        if (self.b is None) != (self.relation in ("at_most", "at_least")):
            raise ValueError(f"relation {self.relation!r} needs {'a' if self.b is None else 'no'} second subject")


@dataclass(frozen=True)
class ClaimResult:
    claim: Claim
    a: float
    b: float | None
    holds: bool
    statement: str  # the claim in words
    sentence: str  # the verdict: "As claimed: …" or "Not this time: …", with the numbers


# --------------------------------------------------------------------------------- lessons
@dataclass(frozen=True)
class Lesson:
    """One lesson: its page kind, its setting (URL values of the page its button loads; rule-derived lrs
    are added from ``lesson_lrs.json``), the rule of every zeroth-order lr, and its claims.

    ``kind``: ``playground`` / ``compare`` (the figure is that page's, the claims are over its runs), or
    ``moments`` / ``spsa`` / ``memory`` (a figure of their own; ``extra`` holds their setting and
    ``params`` the Playground setting the button loads). Subjects are optimizer names, and on a
    compare lesson ``optimizer[value]`` for one optimizer at one swept value (e.g. ``adamezo[0.7/0.9]``).
    """

    number: int
    slug: str
    title: str
    kind: str
    params: Mapping[str, str]
    claims: tuple[Claim, ...]
    rules: Mapping[str, Rule] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)
    seeds: int = 8

    @property
    def page(self) -> str:
        return self.kind if self.kind in ("playground", "compare") else "playground"

    def text(self) -> str:
        """The lesson's Markdown text (``assets/lessons/SLUG.md``)."""
        path = LESSON_DIR / f"{self.slug}.md"
        try:
            return path.read_text(encoding="utf-8")
        except OSError:
            return f"*(lesson text {path.name} is missing)*"


QUADRATIC = {"ls": "quadratic", "kappa": "1000", "angle": "0", "steps": "1000", "budget": "none", "fair": "off"}
ROTATED = {"ls": "rotated-quadratic", "kappa": "100", "angle": "45", "steps": "1000", "budget": "none",
           "fair": "off"}

LESSONS: tuple[Lesson, ...] = (
    Lesson(
        1, "paper", "1. The paper's figure: AdaMeZO follows Adam, MeZO does not", "playground",
        params=dict(LANDING),
        rules={"mezo": PathRule(float(LANDING["adam.lr"])), "adamezo": PathRule(float(LANDING["adam.lr"]))},
        claims=(Claim("final_loss", "mezo", "ratio", 10, "adamezo"),
                Claim("end_gap", "mezo", "ratio", 2, "adamezo")),
    ),
    Lesson(
        2, "curvature", "2. Curvature: MeZO zig-zags across the valley, AdaMeZO comes down and follows it",
        "playground",
        params=QUADRATIC | {"opts": "adam,mezo,adamezo", "adam.lr": "0.01"},
        rules={"mezo": PathRule(0.01), "adamezo": PathRule(0.01)},
        claims=(Claim("swing", "mezo", "ratio", 3, "adamezo"),),
    ),
    Lesson(
        3, "moments", "3. Momentum and the second moment: what each one does", "compare",
        params=QUADRATIC | {"opt": "adamezo", "param": "betas", "values": "0.7/0.9, 0.7/0, 0/0"},
        rules={"adamezo[0.7/0.9]": PathRule(0.01), "adamezo[0.7/0]": PathRule(0.01),
               "adamezo[0/0]": PathRule(0.01)},
        claims=(Claim("swing", "adamezo[0.7/0]", "ratio", 3, "adamezo[0.7/0.9]"),
                Claim("reversals", "adamezo[0/0]", "ratio", 2, "adamezo[0.7/0]")),
    ),
    Lesson(
        4, "seed-budget", "4. The seed budget: few directions against fresh ones", "compare",
        params={k: v for k, v in LANDING.items() if k not in ("opts", "adam.lr", "fair", "budget")}
        | {"opt": "mezo,adamezo", "param": "seed_budget", "values": "1, 2, 10, none"},
        rules={"mezo": SameAs("paper", "mezo"), "adamezo": SameAs("paper", "adamezo")},
        claims=(Claim("line_offset", "mezo[1]", "at_most", 1e-6, over="max"),
                Claim("line_offset", "adamezo[1]", "at_most", 1e-6, over="max"),
                Claim("final_loss", "adamezo[1]", "ratio", 10, "adamezo[none]"),
                Claim("final_loss", "mezo[none]", "ratio", 10, "adamezo[none]")),
    ),
    Lesson(
        5, "no-win", "5. Where AdaMeZO does not win: a tuned MeZO on a rotated valley", "playground",
        params=ROTATED | {"opts": "mezo,adamezo"},
        rules={"mezo": GridRule(1e-3, 1e-1, 9), "adamezo": GridRule(1e-3, 1e-1, 9)},
        claims=(Claim("final_loss", "adamezo", "ratio", 10, "mezo"),
                Claim("distance", "adamezo", "ratio", 10, "mezo")),
    ),
    Lesson(
        6, "rebuild", "6. How the moments are rebuilt without memory", "moments",
        params={"ls": "quadratic", "kappa": "1000", "angle": "0", "steps": "30", "budget": "none",
                "fair": "off", "opts": "adamezo,zo-adam", "zo-adam.beta1": "0.7", "zo-adam.beta2": "0.9",
                "zo-adam.delta": "1e-08"},
        rules={"adamezo": SameAs("curvature", "adamezo"), "zo-adam": SameAs("curvature", "adamezo")},
        extra={"landscape": ("quadratic", {"kappa": 1000.0, "angle": 0.0}), "step": 10, "late": 20},
        claims=(Claim("moment_gap", "adamezo", "at_most", 1e-9, over="max"),
                Claim("moment_gap", "adamezo@late", "at_least", 1e-3, over="median")),
    ),
    Lesson(
        7, "spsa", "7. The SPSA estimate: right on average, noisy one at a time", "spsa",
        params={"ls": "rosenbrock", "steps": "1000", "budget": "none", "fair": "off", "opts": "mezo",
                "x0": "-1.5", "y0": "2"},
        rules={"mezo": SameAs("paper", "mezo")},
        extra={"landscape": ("rosenbrock", {}), "point": (-1.5, 2.0), "draws": 500, "eps": 1e-3},
        claims=(Claim("mean_error", "mezo", "at_most", 0.2),
                Claim("single_error", "mezo", "at_least", 0.5)),
    ),
    Lesson(
        8, "memory", "8. Where the memory goes", "memory",
        params={},
        extra={"sizes": (1_000, 10_000, 100_000), "horizon": 10},
        claims=(Claim("state_bytes", "adamezo@1000", "within", 1, "adamezo@100000"),
                Claim("state_bytes", "adam@100000", "ratio", 1000, "adamezo@100000")),
        seeds=1,
    ),
)
LESSONS_BY_SLUG = {lesson.slug: lesson for lesson in LESSONS}


# --------------------------------------------------------------------------------- subjects and settings
def split_subject(subject: str) -> tuple[str, str | None]:
    """``"adamezo[0.7/0.9]"`` -> ``("adamezo", "0.7/0.9")``; ``"mezo"`` -> ``("mezo", None)``."""
    if subject.endswith("]") and "[" in subject:
        name, value = subject[:-1].split("[", 1)
        return name, value
    return subject.split("@", 1)[0], None


def subject_label(lesson: Lesson, subject: str) -> str:
    """A subject in words: ``AdaMeZO``, ``AdaMeZO, betas 0.7/0.9``, ``AdaMeZO (100,000 parameters)``."""
    name, value = split_subject(subject)
    title = OPTIMIZERS[name].title.replace(" (first order)", "") if name in OPTIMIZERS else name
    if value is not None:
        param = str(lesson.params.get("param", "")).replace("_", " ")
        return f"{title}, {param} {value}"
    if "@" in subject:
        tail = subject.split("@", 1)[1]
        if tail == "late":
            return f"{title} at step {lesson.extra.get('late')}"
        return f"{title} ({int(tail):,} parameters)"
    return title


def stored_lrs() -> dict[str, dict[str, dict[str, Any]]]:
    return load_lesson_lrs()


def rule_lr(lesson: Lesson, subject: str, lrs: Mapping[str, Any] | None = None) -> float:
    """The stored lr of ``subject`` in ``lesson`` (``SameAs`` followed); ``KeyError`` if not calibrated."""
    lrs = stored_lrs() if lrs is None else lrs
    rule = lesson.rules[subject]
    if isinstance(rule, SameAs):
        return rule_lr(LESSONS_BY_SLUG[rule.lesson], rule.subject, lrs)
    return float(lrs[lesson.slug][subject]["lr"])


def setting(lesson: Lesson, first_seed: int = 0, count: int | None = None,
            lrs: Mapping[str, Any] | None = None) -> dict[str, str]:
    """The URL values of the lesson's page for seeds ``first_seed`` … ``first_seed + count − 1``, with
    every rule-derived lr filled in: what its button loads."""
    out = dict(lesson.params)
    if lesson.kind == "memory":
        return out
    out |= {"seed": str(int(first_seed)), "repeats": str(int(count or lesson.seeds))}
    per_value = {}
    for subject in lesson.rules:
        name, value = split_subject(subject)
        lr = rule_lr(lesson, subject, lrs)
        if value is None:
            out[f"{name}.lr"] = repr(lr)
        else:
            per_value[value] = lr
    if per_value:
        values = [controls.fmt(v) for v in controls.parse_sweep_values(out["values"], out["opt"].split(","),
                                                                          out["param"])]
        out["lrs"] = ", ".join(repr(per_value[v]) for v in values)
    return out


def typed_setting(lesson: Lesson, first_seed: int = 0, count: int | None = None,
                  lrs: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """:func:`setting` parsed by the page's own fields (so the check reads it exactly as the page does)."""
    fields = controls.playground_fields() if lesson.page == "playground" else controls.compare_fields()
    values, bad = controls.setting_from_params(fields, setting(lesson, first_seed, count, lrs))
    if bad:
        raise ValueError(f"lesson {lesson.slug}: its setting is not valid: {'; '.join(bad)}")
    return values


@dataclass(frozen=True)
class RunPlan:
    """One subject's runs: optimizer, hyperparameters, seed budget (one run per seed)."""

    subject: str
    optimizer: str
    hyper: dict[str, Any]
    seed_budget: int | None


def run_plans(lesson: Lesson, values: Mapping[str, Any]) -> list[RunPlan]:
    """The runs of a playground or compare lesson's setting, keyed by subject, exactly as its page runs them."""
    if lesson.kind == "playground":
        return [RunPlan(n, n, controls.hyper_of(values, n), values["budget"]) for n in values["opts"]]
    return [RunPlan(f"{r.optimizer}[{controls.fmt(r.value)}]", r.optimizer, r.hyper, r.seed_budget)
            for r in controls.sweep_plan(values)]


# --------------------------------------------------------------------------------- measuring
Runner = Callable[[list[TrajectoryJob]], list[Trajectory]]


def run_here(jobs: list[TrajectoryJob]) -> list[Trajectory]:
    """Compute jobs one after another in this process."""
    return landscapes.run_trajectories(jobs)


def trajectory_values(lesson: Lesson, runs: Mapping[str, Sequence[Trajectory]],
                      ls: Landscape) -> dict[str, dict[str, list[float]]]:
    """metric -> subject -> per-seed values, for every metric the lesson's claims use."""
    angle = float(ls.params.get("angle", 0.0))
    adam_end = runs["adam"][0].xy[-1] if "adam" in runs else None

    def one(metric: str, tr: Trajectory) -> float:
        if metric == "final_loss":
            return tr.final_loss
        if metric == "distance":
            return tr.metrics(ls).distance
        if metric == "end_gap":
            if adam_end is None:
                raise ValueError(f"lesson {lesson.slug}: end_gap needs an Adam run")
            return math.inf if tr.diverged_at is not None else float(np.hypot(*(tr.xy[-1] - adam_end)))
        if metric == "swing":
            return valley_swing(tr.xy, angle)
        if metric == "reversals":
            return reversal_rate(tr.xy, angle)
        if metric == "line_offset":
            return line_offset(tr.xy)
        raise ValueError(f"metric {metric!r} is not measured on trajectories")

    out: dict[str, dict[str, list[float]]] = {}
    for claim in lesson.claims:
        for subject in (claim.a, claim.b):
            if subject is None:
                continue
            if subject not in runs:
                raise ValueError(f"lesson {lesson.slug}: claim names {subject!r}, which is not one of its runs "
                                 f"({', '.join(runs)})")
            out.setdefault(claim.metric, {})[subject] = [one(claim.metric, tr) for tr in runs[subject]]
    return out


def measure(lesson: Lesson, seeds: Sequence[int], runner: Runner = run_here,
            lrs: Mapping[str, Any] | None = None) -> dict[str, dict[str, list[float]]]:
    """Every value the lesson's claims compare, for ``seeds``: metric -> subject -> per-seed values."""
    seeds = list(seeds)
    if lesson.kind in ("playground", "compare"):
        values = typed_setting(lesson, seeds[0], len(seeds), lrs)
        ls = controls.landscape_from_key(controls.landscape_key_of(values))
        start = controls.start_point(values, ls)
        plans = run_plans(lesson, values)
        jobs = [TrajectoryJob(ls, p.optimizer, int(values["steps"]), p.hyper, start, s, p.seed_budget)
                for p in plans for s in seeds]
        done = iter(runner(jobs))
        runs = {p.subject: [next(done) for _ in seeds] for p in plans}
        return trajectory_values(lesson, runs, ls)
    if lesson.kind == "moments":
        return moment_values(lesson, seeds)
    if lesson.kind == "spsa":
        return spsa_values(lesson, seeds)
    if lesson.kind == "memory":
        return memory_values(lesson)
    raise ValueError(f"unknown lesson kind {lesson.kind!r}")


def extra_landscape(lesson: Lesson) -> Landscape:
    name, params = lesson.extra["landscape"]
    return landscapes.get(name, **params)


def moment_values(lesson: Lesson, seeds: Sequence[int]) -> dict[str, dict[str, list[float]]]:
    ls = extra_landscape(lesson)
    hyper = {"lr": rule_lr(lesson, "adamezo")}
    now = [moment_snapshot(ls, int(lesson.extra["step"]), hyper, seed=s).relative_difference() for s in seeds]
    late = [moment_snapshot(ls, int(lesson.extra["late"]), hyper, seed=s).relative_difference() for s in seeds]
    return {"moment_gap": {"adamezo": now, "adamezo@late": late}}


def spsa_values(lesson: Lesson, seeds: Sequence[int]) -> dict[str, dict[str, list[float]]]:
    ls = extra_landscape(lesson)
    draws = [spsa_draws(ls, tuple(lesson.extra["point"]), int(lesson.extra["draws"]), float(lesson.extra["eps"]), s)
             for s in seeds]
    pooled = np.concatenate([d.estimates for d in draws]).mean(axis=0)
    gradient = draws[0].gradient
    mean_error = float(np.linalg.norm(pooled - gradient) / np.linalg.norm(gradient))
    return {"mean_error": {"mezo": [mean_error]},
            "single_error": {"mezo": [float(np.median(d.single_errors())) for d in draws]}}


#: The memory lesson measures every optimizer of the registry.
MEMORY_OPTIMIZERS = tuple(OPTIMIZERS)


def measured_state_bytes(sizes: Sequence[int] = (1_000, 10_000, 100_000), horizon: int = 10) -> list[dict]:
    """Optimizer-state bytes measured with ``optimizers.state_bytes`` (the number the LLM page records as
    ``optimizer_state_bytes``) on a float32 parameter of each size, after enough steps of
    f(θ) = ½‖θ‖² for every state to exist (``horizon + 1`` for an optimizer with a horizon K, so its K
    pairs are all there)."""
    import torch

    from optimizers import make_optimizer, state_bytes

    rows = []
    for size in sizes:
        for name in MEMORY_OPTIMIZERS:
            theta = torch.nn.Parameter(torch.full((int(size),), 0.5, dtype=torch.float32))
            hyper = {"horizon": horizon} if "horizon" in OPTIMIZERS[name].specs else {}
            opt = make_optimizer(name, [theta], lr=1e-3, **hyper)
            for _ in range(horizon + 1 if hyper else 2):
                opt.step(lambda: 0.5 * (theta * theta).sum())
            rows.append({"optimizer": name, "label": OPTIMIZERS[name].title, "params": int(size),
                         "state_bytes": int(state_bytes(opt)), "measured": True})
    return rows


def _kept(words: str) -> str:
    return "×" if words == "none" else f"✓ {words}"


def paper_table(measured: Sequence[dict]) -> list[dict]:
    """The paper's Table 1 columns for every measured optimizer, from the library's own numbers: parameter
    memory (P, the float32 weights, plus the state measured by ``state_bytes``, fitted as a + b·P through
    the two largest sizes: b/4 more copies of P and a bytes; first-order methods also need the backward
    pass, B), forward passes per step (the registry's, one direction) and whether the first and second
    moments are kept (the registry entry's words)."""
    by: dict[str, list[dict]] = {}
    for r in measured:
        by.setdefault(r["optimizer"], []).append(r)
    rows = []
    for name, rs in by.items():
        entry = OPTIMIZERS[name]
        (p0, b0), (p1, b1) = [(r["params"], r["state_bytes"]) for r in sorted(rs, key=lambda r: r["params"])[-2:]]
        per_param = (b1 - b0) / (p1 - p0)
        constant = round(b0 - per_param * p0)
        copies = 1 + per_param / 4
        memory = f"{copies:g}P" + (f" + {constant} B" if constant else "") + ("" if entry.zeroth_order else " + backward")
        rows.append({"optimizer": entry.title, "parameter memory": memory,
                     "forward passes per step": entry.forward_passes_per_step,
                     "1st moment": _kept(entry.first_moment), "2nd moment": _kept(entry.second_moment)})
    return rows


def memory_values(lesson: Lesson) -> dict[str, dict[str, list[float]]]:
    rows = measured_state_bytes(tuple(lesson.extra["sizes"]), int(lesson.extra["horizon"]))
    return {"state_bytes": {f"{r['optimizer']}@{r['params']}": [float(r["state_bytes"])] for r in rows}}


# --------------------------------------------------------------------------------- evaluating
def _combine(claim: Claim, values: Sequence[float]) -> float:
    values = np.asarray(values, dtype=np.float64)
    if claim.over == "max":
        return float(np.max(values))
    return float(np.median(values))


def _ratio_text(r: float) -> str:
    if not math.isfinite(r):
        return "infinitely many times"
    return f"{r:.3g}×" if r < 1000 else f"{r:,.0f}×"


def statement(lesson: Lesson, claim: Claim) -> str:
    """The claim in words, from its data."""
    words = METRICS[claim.metric].words
    a = subject_label(lesson, claim.a)
    fmt = METRICS[claim.metric].fmt
    if claim.relation == "ratio":
        return f"{a}'s {words} is at least {claim.margin:g}× {subject_label(lesson, claim.b)}'s"
    if claim.relation == "within":
        if claim.margin == 1:
            return f"{a}'s {words} equals {subject_label(lesson, claim.b)}'s"
        return f"{a}'s {words} is within a factor {claim.margin:g} of {subject_label(lesson, claim.b)}'s"
    if claim.relation == "at_most":
        return f"{a}'s {words} is at most {fmt(claim.margin)}"
    return f"{a}'s {words} is at least {fmt(claim.margin)}"


def evaluate(lesson: Lesson, values: Mapping[str, Mapping[str, Sequence[float]]]) -> list[ClaimResult]:
    """Every claim of ``lesson`` against the measured ``values`` (from :func:`measure`, or from the page's
    own runs through :func:`trajectory_values`), with its verdict sentence."""
    out = []
    for claim in lesson.claims:
        fmt = METRICS[claim.metric].fmt
        words = METRICS[claim.metric].words
        a = _combine(claim, values[claim.metric][claim.a])
        a_label = subject_label(lesson, claim.a)
        b = None if claim.b is None else _combine(claim, values[claim.metric][claim.b])
        if claim.relation in ("ratio", "within"):
            b_label = subject_label(lesson, claim.b)
            with np.errstate(all="ignore"):
                ratio = a / b if b else (math.inf if a > 0 else math.nan)
            if claim.relation == "ratio":
                holds = bool(ratio >= claim.margin)
                asked = f"at least {claim.margin:g}×"
            else:
                holds = bool(1 / claim.margin <= ratio <= claim.margin) if math.isfinite(ratio) else False
                asked = "equal" if claim.margin == 1 else f"within a factor {claim.margin:g}"
            detail = (f"{a_label}'s {words} ({fmt(a)}) is {_ratio_text(ratio)} {b_label}'s ({fmt(b)}); "
                      f"claimed: {asked}.")
        else:
            holds = bool(a <= claim.margin) if claim.relation == "at_most" else bool(a >= claim.margin)
            word = "at most" if claim.relation == "at_most" else "at least"
            detail = f"{a_label}'s {words} is {fmt(a)}; claimed: {word} {fmt(claim.margin)}."
        sentence = ("As claimed: " if holds else "Not this time: ") + detail
        out.append(ClaimResult(claim, a, b, holds, statement(lesson, claim), sentence))
    return out


# --------------------------------------------------------------------------------- rules: calibrate and verify
def _rule_context(lesson: Lesson, subject: str) -> tuple[Landscape, str, int, dict[str, Any], tuple, int | None]:
    """(landscape, optimizer, steps, hyperparameters without lr, start, seed budget) of a subject's runs."""
    values = typed_setting(lesson, 0, 1, lrs=_placeholder_lrs(lesson))
    ls = controls.landscape_from_key(controls.landscape_key_of(values))
    plan = next(p for p in run_plans(lesson, values) if p.subject == subject)
    hyper = {k: v for k, v in plan.hyper.items() if k != "lr"}
    return ls, plan.optimizer, int(values["steps"]), hyper, controls.start_point(values, ls), plan.seed_budget


def _placeholder_lrs(lesson: Lesson) -> dict[str, Any]:
    """Stored lrs with 1e-3 for every subject not calibrated yet (the rules do not read them)."""
    lrs = stored_lrs()
    slugs = {lesson.slug} | {r.lesson for r in lesson.rules.values() if isinstance(r, SameAs)}
    for slug in slugs:
        entry = lrs.setdefault(slug, {})
        for subject in LESSONS_BY_SLUG[slug].rules:
            entry.setdefault(subject, {"lr": 1e-3})
    return lrs


def adam_length(lesson: Lesson, subject: str, runner: Runner = run_here) -> float:
    rule = lesson.rules[subject]
    ls, _, steps, _, start, _ = _rule_context(lesson, subject)
    (tr,) = runner([TrajectoryJob(ls, "adam", steps, {"lr": rule.adam_lr}, start, 0, None)])
    return tr.path_length


def calibrate(lesson: Lesson, log: Callable[[str], None] = print) -> dict[str, dict[str, Any]]:
    """Compute every lr of ``lesson`` from its rule (``SameAs`` rules are not stored)."""
    out: dict[str, dict[str, Any]] = {}
    for subject, rule in lesson.rules.items():
        if isinstance(rule, SameAs):
            continue
        ls, name, steps, hyper, start, budget = _rule_context(lesson, subject)
        t0 = time.perf_counter()
        if isinstance(rule, PathRule):
            reference = adam_length(lesson, subject)
            match = landscapes.match_path_length(ls, name, rule.ratio * reference, steps, hyper, CALIBRATION_SEEDS,
                                                 start, budget, lr_bounds=(1e-6, 3.0), grid=13, rtol=2e-3)
            out[subject] = {"lr": match.lr, "rule": rule.describe(), "adam_path": reference,
                            "target_path": rule.ratio * reference, "path": match.path_length}
        else:
            swept = landscapes.tune_lr(ls, name, rule.grid, steps, hyper, CALIBRATION_SEEDS, start, budget)
            lr, _ = swept.best()
            out[subject] = {"lr": lr, "rule": rule.describe(), "grid": swept.values,
                            "median_final_losses": swept.median_finals()}
        log(f"  {lesson.slug} {subject}: lr {out[subject]['lr']:.6g} ({time.perf_counter() - t0:.0f} s)")
    return out


@dataclass(frozen=True)
class RuleCheck:
    lesson: Lesson
    subject: str
    holds: bool
    sentence: str


def verify_rules(lesson: Lesson, runner: Runner = run_here,
                 lrs: Mapping[str, Any] | None = None) -> list[RuleCheck]:
    """Whether every stored lr of ``lesson`` still satisfies its rule (cheap: one set of runs per lr)."""
    lrs = stored_lrs() if lrs is None else lrs
    out = []
    for subject, rule in lesson.rules.items():
        label = subject_label(lesson, subject)
        try:
            lr = rule_lr(lesson, subject, lrs)
        except KeyError:
            out.append(RuleCheck(lesson, subject, False,
                                 f"{label}: no stored lr; run `python -m app.lessons calibrate`"))
            continue
        if isinstance(rule, SameAs):
            out.append(RuleCheck(lesson, subject, True, f"{label}: lr {lr:.4g}, {rule.describe()}"))
            continue
        ls, name, steps, hyper, start, budget = _rule_context(lesson, subject)
        if isinstance(rule, PathRule):
            runs = runner([TrajectoryJob(ls, "adam", steps, {"lr": rule.adam_lr}, start, 0, None)]
                          + [TrajectoryJob(ls, name, steps, hyper | {"lr": lr}, start, s, budget)
                             for s in CALIBRATION_SEEDS])
            target = rule.ratio * runs[0].path_length
            lengths = [math.inf if t.diverged_at is not None else t.path_length for t in runs[1:]]
            length = float(np.median(lengths))
            holds = abs(length / target - 1) <= PATH_TOLERANCE
            out.append(RuleCheck(lesson, subject, holds,
                                 f"{label}: lr {lr:.4g} gives a median path of {length:.3g} against a target of "
                                 f"{target:.3g} ({rule.ratio:g} × Adam's {runs[0].path_length:.3g}); "
                                 f"allowed: within {PATH_TOLERANCE:.0%}"))
        else:
            grid = rule.grid
            i = int(np.argmin([abs(math.log(g / lr)) for g in grid]))
            on_grid = math.isclose(grid[i], lr, rel_tol=1e-9)
            near = [j for j in (i - 1, i, i + 1) if 0 <= j < len(grid)]
            origin = ls.start if start is None else start
            max_loss = 1e6 * max(1.0, abs(ls(*origin)))
            runs = runner([TrajectoryJob(ls, name, steps, hyper | {"lr": grid[j]}, start, s, budget, max_loss)
                           for j in near for s in CALIBRATION_SEEDS])
            finals = {j: float(np.median([t.final_loss for t in runs[k * len(CALIBRATION_SEEDS):
                                                                     (k + 1) * len(CALIBRATION_SEEDS)]]))
                      for k, j in enumerate(near)}
            holds = on_grid and all(finals[i] <= finals[j] for j in near)
            neighbours = ", ".join(f"lr {grid[j]:.3g}: {finals[j]:.3g}" for j in near)
            out.append(RuleCheck(lesson, subject, holds,
                                 f"{label}: lr {lr:.4g} {'is' if on_grid else 'is NOT'} on the grid; median final "
                                 f"loss with its neighbours: {neighbours}"))
    return out


# --------------------------------------------------------------------------------- command line
def parse_seeds(text: str) -> list[int]:
    """``"0-7"`` -> 0..7, ``"3"`` -> [3]; ``ValueError`` saying what is allowed."""
    allowed = "allowed: FIRST-LAST with 0 <= FIRST <= LAST, at most 64 seeds (e.g. 0-7), or one seed"
    parts = str(text).strip().split("-")
    try:
        first, last = (int(parts[0]), int(parts[-1])) if len(parts) in (1, 2) else (None, None)
    except ValueError:
        first = last = None
    if first is None or first < 0 or last < first or last - first >= 64:
        raise ValueError(f"--seeds {text!r} is not a seed range; {allowed}")
    return list(range(first, last + 1))


def pool_runner(executor: Executor) -> Runner:
    """A runner that computes a batch of runs on ``executor`` (its owner shuts it down)."""
    def run(jobs: list[TrajectoryJob]) -> list[Trajectory]:
        return landscapes.run_trajectories(jobs, executor=executor)
    return run


def check(seeds: Sequence[int], runner: Runner = run_here, lessons: Sequence[Lesson] = LESSONS,
          log: Callable[[str], None] = print) -> bool:
    """Print the table (lesson, claim, measured values, holds/fails) and return whether everything holds."""
    ok = True
    log(f"Lesson claims over seeds {seeds[0]}–{seeds[-1]} ({len(seeds)} repeats); rules on seeds "
        f"{CALIBRATION_SEEDS[0]}–{CALIBRATION_SEEDS[-1]}.")
    log("| lesson | claim | measured | holds |")
    log("|---|---|---|---|")
    for lesson in lessons:
        for rc in verify_rules(lesson, runner):
            ok &= rc.holds
            log(f"| {lesson.number} | lr rule of {subject_label(lesson, rc.subject)} | {rc.sentence} | "
                f"{'holds' if rc.holds else 'FAILS'} |")
        try:
            measured = measure(lesson, seeds, runner)
        except KeyError:
            ok = False
            log(f"| {lesson.number} | (every claim) | not measured: an lr of this lesson is not calibrated | FAILS |")
            continue
        for res in evaluate(lesson, measured):
            ok &= res.holds
            measured = res.sentence.split(": ", 1)[1]
            log(f"| {lesson.number} | {res.statement} | {measured} | {'holds' if res.holds else 'FAILS'} |")
    log("All claims hold." if ok else "Some claims FAIL.")
    return ok


def write_lrs(results: Mapping[str, Mapping[str, Any]]) -> None:
    """Merge ``results`` (lesson slug -> subject -> entry) into ``lesson_lrs.json``, atomically."""
    try:
        data = json.loads(LESSON_LRS_FILE.read_text(encoding="utf-8"))
    except FileNotFoundError:
        data = {}
    data.update({k: dict(v) for k, v in results.items()})
    tmp = LESSON_LRS_FILE.with_name(LESSON_LRS_FILE.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, LESSON_LRS_FILE)
    reload_lesson_lrs()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.lessons", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("check", help="evaluate every lesson's claims over a range of seeds (exit 1 if one fails)")
    c.add_argument("--seeds", default="0-7", help="FIRST-LAST (default 0-7)")
    c.add_argument("--only", default="", help="comma-separated lesson slugs (default: all)")
    c.add_argument("--processes", type=int, default=0,
                   help="worker processes for the runs (default: the CPU cores, at most 4; 1: this process)")
    k = sub.add_parser("calibrate", help="recompute every rule-derived lr into app/lesson_lrs.json")
    k.add_argument("--only", default="", help="comma-separated lesson slugs (default: all)")
    args = parser.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in only if s not in LESSONS_BY_SLUG]
    if unknown:
        parser.error(f"--only: unknown lesson {unknown[0]!r}; allowed: {', '.join(LESSONS_BY_SLUG)}")
    chosen = [LESSONS_BY_SLUG[s] for s in only] if only else list(LESSONS)
    if args.command == "calibrate":
        for lesson in chosen:
            results = calibrate(lesson)
            if results:
                write_lrs({lesson.slug: results})
        return 0
    try:
        seeds = parse_seeds(args.seeds)
    except ValueError as exc:
        parser.error(str(exc))
    processes = args.processes or min(4, landscapes.parallel.default_processes())
    if not 1 <= processes <= landscapes.parallel.MAX_PROCESSES:
        parser.error(f"--processes {processes} is out of range; allowed: 1 to {landscapes.parallel.MAX_PROCESSES}")
    if processes == 1:
        ok = check(seeds, run_here, chosen)
    else:
        with landscapes.parallel.process_pool(processes) as pool:  # this command's pool, for its lifetime
            ok = check(seeds, pool_runner(pool), chosen)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
