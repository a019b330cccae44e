"""The app's computing: thin, cached calls into ``landscapes`` (no optimizer math here).

Every cached function is keyed on plain hashable arguments that together are the full setting
(landscape key, optimizer, steps, hyperparameters as sorted items, start, seed, seed budget), so a
cached result is exactly the result of that setting. Results are turned into the figure builders'
records (:class:`app.figures.Path`, :class:`app.figures.Surface`).
"""

from __future__ import annotations

import atexit
import math
import os
import sys
import threading
import types
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Executor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import streamlit as st

import landscapes
from landscapes import Landscape, Trajectory
from optimizers import OPTIMIZERS

from app.controls import LandscapeKey, landscape_from_key, landscape_key  # noqa: F401  (re-exported)
from app.figures import Path, Surface, colour_for, number_text


@st.cache_resource(max_entries=64, show_spinner=False)
def build_landscape(key: LandscapeKey) -> Landscape:
    """The landscape for ``key`` (``controls.landscape_from_key``), cached; bad formulas or parameters raise
    ``ValueError`` (shown by the page)."""
    return landscape_from_key(key)


def hyper_items(hyper: Mapping[str, Any]) -> tuple:
    return tuple(sorted(hyper.items()))


class _Runs:
    """Trajectories shared by every session, least recently used dropped first (what ``st.cache_data``
    did for them, plus the one thing it cannot do: say which runs of a setting are missing, so that
    those are computed together on several cores)."""

    def __init__(self, size: int):
        self.size = size
        self._runs: OrderedDict[tuple, Trajectory] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple) -> Trajectory | None:
        with self._lock:
            run = self._runs.get(key)
            if run is not None:
                self._runs.move_to_end(key)
            return run

    def put(self, key: tuple, run: Trajectory) -> None:
        for a in (run.xy, run.loss, run.forward_passes):
            a.flags.writeable = False  # shared between sessions: nobody may change a cached run
        with self._lock:
            self._runs[key] = run
            self._runs.move_to_end(key)
            while len(self._runs) > self.size:
                self._runs.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._runs.clear()


RUNS = _Runs(512)

#: Worker processes for new trajectories (``ADAMEZO_APP_PROCESSES``; 1: compute in the server process).
#: Default: the CPU cores, at most 4. Runs are computed in the pool only when at least two are missing
#: and together they have at least ``PARALLEL_MIN_STEPS`` steps (below that, sending them costs more
#: than it saves).
PARALLEL_MIN_STEPS = 400


def processes() -> int:
    raw = os.environ.get("ADAMEZO_APP_PROCESSES", "").strip()
    if not raw:
        return min(4, landscapes.parallel.default_processes())
    top = landscapes.parallel.MAX_PROCESSES
    allowed = f"allowed: 1 (no worker processes) to {top}"
    try:
        n = int(raw)
    except ValueError:
        raise ValueError(f"ADAMEZO_APP_PROCESSES={raw!r} is not an integer; {allowed}") from None
    if not 1 <= n <= top:
        raise ValueError(f"ADAMEZO_APP_PROCESSES={n} is out of range; {allowed}")
    return n


@contextmanager
def _bare_main():
    """Start workers without the app's main script. A spawned worker first runs the parent's ``__main__``
    again (as ``__mp_main__``); in a Streamlit app that module is the app script, whose top level draws a
    page, so every worker would run the app (and start a pool of its own, which fails). With a bare
    ``__main__`` while the workers start, they import only what their jobs need. The app's module is put
    back unless someone else replaced it meanwhile (Streamlit sets it at the start of every script run; a
    worker started in that moment breaks the pool, which is then replaced)."""
    caller = sys.modules.get("__main__")
    bare = types.ModuleType("__main__")
    sys.modules["__main__"] = bare
    try:
        yield bare
    finally:
        if sys.modules.get("__main__") is bare:
            sys.modules["__main__"] = caller


class WorkerPool:
    """The app's worker processes for new trajectories: one pool per server, started in the background
    after the first page, replaced when it breaks (a worker killed), shut down with the server."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._executor: Executor | None = None
        self._size = 0
        self._warm: list = []

    def start(self, n: int) -> None:
        """Start ``n`` worker processes now, in the background (returns at once); a running pool with at
        least ``n`` workers is kept, a smaller one replaced."""
        with self._lock:
            if self._executor is not None and self._size >= n:
                return
            old, self._executor = self._executor, None
            if old is not None:
                old.shutdown(wait=False)  # queued runs of other sessions still finish there
            pool = landscapes.parallel.process_pool(n)
            with _bare_main() as bare:
                warm = []
                for _ in range(n):  # each submit starts a worker: with the bare main in place
                    sys.modules["__main__"] = bare
                    warm += landscapes.parallel.warm_up(pool, 1)
            self._executor, self._size, self._warm = pool, n, warm

    def ready(self) -> bool:
        """Whether the pool is started and every one of its workers has answered."""
        with self._lock:
            return self._executor is not None and all(f.done() and not f.cancelled() and f.exception() is None
                                                      for f in self._warm)

    def executor(self) -> Executor | None:
        with self._lock:
            return self._executor

    def discard(self, executor: Executor) -> None:
        """Forget a pool that broke; the next :meth:`start` makes a new one."""
        with self._lock:
            if self._executor is executor:
                self._executor, self._warm = None, []
        executor.shutdown(wait=False)

    def shutdown(self) -> None:
        """Stop the worker processes (a later :meth:`start` starts new ones)."""
        with self._lock:
            pool, self._executor, self._warm = self._executor, None, []
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


POOL = WorkerPool()
atexit.register(POOL.shutdown)


def start_workers() -> None:
    """Start the worker processes in the background (once per server; the first runs of the first page
    are computed in the server process until the workers are up)."""
    n = processes()
    if n > 1:
        POOL.start(n)


def _run_key(key: LandscapeKey, name: str, steps: int, hyper: tuple, start: tuple[float, float], seed: int,
             seed_budget: int | None) -> tuple:
    # First-order optimizers draw no random directions (seed and seed budget have no effect on their
    # run): one cached run serves every seed and budget.
    if not OPTIMIZERS[name].zeroth_order:
        seed, seed_budget = 0, None
    return (key, name, int(steps), hyper, start, int(seed), seed_budget)


def _compute(run_key: tuple) -> Trajectory:
    key, name, steps, hyper, start, seed, seed_budget = run_key
    return landscapes.run_trajectory(build_landscape(key), name, steps, dict(hyper), start=start, seed=seed,
                                     seed_budget=seed_budget)


def missing_work(requests: Iterable[tuple]) -> float:
    """The work (in MeZO steps, ``controls.step_cost``) of the runs of ``requests`` not cached yet."""
    from app.controls import step_cost

    keys = dict.fromkeys(_run_key(*r) for r in requests)
    return sum(k[2] * step_cost(k[1], dict(k[3])) for k in keys if RUNS.get(k) is None)


def prefetch(requests: Iterable[tuple]) -> None:
    """Compute the runs of ``requests`` (``trajectory`` arguments) that are not cached yet, together:
    on the worker processes when they are up and the work is large enough, else one after another.
    A run that fails (bad hyperparameter) is left out; ``trajectory`` raises its error."""
    missing = list(dict.fromkeys(k for k in (_run_key(*r) for r in requests) if RUNS.get(k) is None))
    if not missing:
        return
    try:
        n = processes()
    except ValueError:  # shown once by app/main.py
        n = 1
    executor = POOL.executor()
    if (n > 1 and len(missing) > 1 and sum(k[2] for k in missing) >= PARALLEL_MIN_STEPS
            and executor is not None and POOL.ready()):
        jobs = [landscapes.TrajectoryJob(build_landscape(k[0]), k[1], k[2], dict(k[3]), k[4], k[5], k[6])
                for k in missing]
        try:
            runs = landscapes.run_trajectories(jobs, executor=executor, return_exceptions=True,
                                               on_broken=POOL.discard)
        except Exception:  # noqa: BLE001 - anything else: left to trajectory(), which computes here
            return
        for k, run in zip(missing, runs):
            if isinstance(run, Trajectory):
                RUNS.put(k, run)
        return
    for k in missing:
        try:
            RUNS.put(k, _compute(k))
        except ValueError:
            pass


def trajectory(key: LandscapeKey, name: str, steps: int, hyper: tuple, start: tuple[float, float],
               seed: int, seed_budget: int | None) -> Trajectory:
    """One ``landscapes.run_trajectory``, cached (``ValueError`` for bad hyperparameters).

    A first-order run is computed once for every seed and every repeat; the returned record still
    names the seed and budget that were asked for.
    """
    k = _run_key(key, name, steps, hyper, start, seed, seed_budget)
    run = RUNS.get(k)
    if run is None:
        run = _compute(k)
        RUNS.put(k, run)
    if (run.seed, run.seed_budget) != (int(seed), seed_budget):
        run = replace(run, seed=int(seed), seed_budget=seed_budget)
    return run


@st.cache_data(max_entries=64, show_spinner=False)
def surface(key: LandscapeKey, n: int = 120, colour: str = "auto") -> Surface:
    """The landscape on an ``n × n`` grid with its colour values (log where the landscape asks)."""
    ls = build_landscape(key)
    xs, ys, Z = ls.grid(n)
    log = ls.log_scale if colour == "auto" else colour == "log"
    C = ls.colour_values(Z, log=log)
    return Surface(xs, ys, Z, C, log, ls.title, tuple(ls.minima), ls.start)


@st.cache_data(max_entries=64, show_spinner=False)
def contour_image(key: LandscapeKey, n: int = 120, colour: str = "auto") -> str:
    """The landscape's background image (PNG data URI) for the animated contour, cached."""
    from app.figures import contour_image as draw

    return draw(surface(key, n, colour))


@st.cache_resource(max_entries=32, show_spinner=False)
def contour_figure(setting: tuple, _surface: Surface, _paths: Sequence[Path], align: str, _image: str,
                   channel: str = ""):
    """The contour of a setting, ready for the chart's player, as a plain figure dict
    (``figures.contour_figure_dict``), built once per setting.

    ``setting`` is the full hashable setting the paths were computed from (landscape key, colour mode,
    start, every optimizer's name/steps/hyperparameters/colour, seed, seed budget, repeats): the
    unhashed ``_surface``, ``_paths`` and background ``_image`` are a pure function of it. The figure is shared between
    reruns and sessions and must not be modified (``app.chart.plotly_chart`` only reads it).
    """
    from app.figures import contour_figure_dict

    return contour_figure_dict(_surface, _paths, align=align, image=_image, channel=channel)


@st.cache_resource(max_entries=32, show_spinner=False)
def loss_figure(setting: tuple, _paths: Sequence[Path], f_min: float | None, title: str, align: str = "step",
                channel: str = ""):
    """The loss-against-forward-passes figure of a setting, built once (same contract as above); its
    cursor follows the contour's clock on ``channel``."""
    from app.figures import loss_figure as build

    return build(_paths, f_min, title=title, align=align, channel=channel)


@dataclass
class RunResult:
    """One optimizer in one setting: the shown run (first seed), all seeds' runs, and their summary."""

    name: str
    label: str
    hyper: dict
    steps: int
    runs: list[Trajectory]
    summary: landscapes.Repeats
    metrics: Any

    def path(self, colour: str) -> Path:
        tr = self.runs[0]
        p = Path(self.label, colour, tr.xy, tr.loss, tr.forward_passes, tr.diverged_at,
                 extra={"seed": tr.seed, "name": self.name})
        if len(self.runs) > 1:
            n = len(tr.forward_passes)
            fp = _full_passes(self.runs)
            p = Path(self.label, colour, tr.xy, tr.loss, tr.forward_passes, tr.diverged_at,
                     median=self.summary.median, lower=self.summary.lower, upper=self.summary.upper,
                     extra={"seed": tr.seed, "name": self.name, "band_forward_passes": fp, "n": n})
        return p


def _full_passes(runs: Sequence[Trajectory]) -> np.ndarray:
    longest = max(runs, key=lambda t: len(t.forward_passes))
    per_step = OPTIMIZERS[longest.optimizer].forward_passes(longest.hyper)
    steps = max(t.steps for t in runs)
    return np.arange(steps + 1) * per_step


def setting_runs(key: LandscapeKey, name: str, steps: int, hyper: Mapping[str, Any], start: tuple[float, float],
                 seed: int, seed_budget: int | None, repeats: int) -> list[tuple]:
    """The ``trajectory`` arguments of every run of a setting (one per repeat), for ``prefetch``."""
    items = hyper_items(hyper)
    return [(key, name, steps, items, start, seed + r, seed_budget) for r in range(repeats)]


def run_setting(key: LandscapeKey, name: str, steps: int, hyper: Mapping[str, Any], start: tuple[float, float],
                seed: int, seed_budget: int | None, repeats: int) -> RunResult:
    """``repeats`` runs (seeds ``seed … seed+repeats−1``), each cached, summarized with median and
    10 %/90 % quantiles. ``ValueError`` from the library (bad hyperparameters) propagates."""
    runs = [trajectory(*r) for r in setting_runs(key, name, steps, hyper, start, seed, seed_budget, repeats)]
    summary = landscapes.summarize(runs)
    metrics = runs[0].metrics(build_landscape(key))
    return RunResult(name, OPTIMIZERS[name].title, dict(hyper), steps, runs, summary, metrics)


@st.cache_data(max_entries=64, show_spinner=False)
def matched_lr(key: LandscapeKey, name: str, target_length: float, steps: int, hyper: tuple,
               start: tuple[float, float], seed: int, seed_budget: int | None) -> landscapes.PathMatch:
    """The lr whose path for ``name`` is closest to ``target_length`` (``landscapes.match_path_length``),
    with the length it gives: ``.reached`` says whether it is within ``.tolerance`` (5 %) of the target."""
    ls = build_landscape(key)
    return landscapes.match_path_length(ls, name, target_length, steps, dict(hyper), seeds=[seed], start=start,
                                        seed_budget=seed_budget, lr_bounds=(1e-6, 3.0), grid=10, rtol=1e-2,
                                        strict=False)


def budget_steps(names: Sequence[str], steps: int,
                 hypers: Mapping[str, Mapping[str, Any]] | None = None) -> tuple[int, dict[str, int]]:
    """The forward-pass budget of ``steps`` two-point steps (2 × steps) and each optimizer's steps (with
    its ``hypers``: q directions a step take 2q passes)."""
    budget = 2 * int(steps)
    return budget, landscapes.equal_budget(budget, names, hypers)


def metrics_rows(results: Sequence[RunResult], landscape: Landscape) -> list[dict]:
    """The metrics table: one row per optimizer (first seed), plus the median over repeats."""
    rows = []
    for r in results:
        m = r.metrics
        row = {
            "optimizer": r.label,
            "lr": r.hyper.get("lr"),
            "final loss": m.final_loss,
            "distance to minimum": m.distance,
            "path length": m.path_length,
            "forward passes": m.forward_passes,
            "steps": m.steps,
            "diverged at": "—" if m.diverged_at is None else m.diverged_at,
        }
        if len(r.runs) > 1:
            row["median final loss (seeds)"] = r.summary.median_final
            row["diverged runs"] = f"{r.summary.diverged}/{len(r.runs)}"
        rows.append(row)
    return rows


#: The metrics table's columns that matter for a verdict; the rest go under "More metrics".
MAIN_METRICS = ("optimizer", "lr", "final loss", "median final loss (seeds)", "distance to minimum")
PRESENT_METRICS = ("optimizer", "median final loss (seeds)", "final loss")


def split_metrics(rows: Sequence[dict], presenting: bool = False) -> tuple[list[dict], list[dict]]:
    """The metrics rows as (main columns, the others with the optimizer column), so that neither table is
    wider than a projector's page (in presentation mode the main table keeps only the final losses)."""
    keep = PRESENT_METRICS if presenting else MAIN_METRICS
    main = [{k: r[k] for k in keep if k in r} for r in rows]
    if presenting and rows and "median final loss (seeds)" not in rows[0]:
        main = [{k: r[k] for k in ("optimizer", "final loss", "distance to minimum")} for r in rows]
    shown = set(main[0]) if main else set()
    more = [{"optimizer": r["optimizer"]} | {k: v for k, v in r.items() if k not in shown} for r in rows]
    return main, more


def markdown_table(rows: Sequence[dict]) -> str:
    """Rows as a Markdown table: floats to 4 significant digits, everything else as text.

    The Playground shows its metrics this way rather than with ``st.dataframe``: the interactive grid
    cost ~0.15 s of browser work on every re-render (measured in Chromium), for a table of a few rows.
    """
    if not rows:
        return ""
    cols = list(rows[0])

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "—" if math.isnan(v) else number_text(v)
        return "—" if v is None else str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def ranking_rows(values: Sequence[Any], results: Sequence[RunResult], fmt,
                 lrs: Sequence[float | None] | None = None, optimizers: Sequence[str] | None = None) -> list[dict]:
    """Sweep ranking: values ordered by median final loss over seeds (diverged runs count as ∞); with
    ``lrs``, each row also says the lr it ran with; with ``optimizers``, which optimizer it is."""
    rows = []
    for i, (v, r) in enumerate(zip(values, results)):
        finals = np.array(r.summary.final_losses, dtype=float)
        rows.append({
            **({"optimizer": optimizers[i]} if optimizers is not None else {}),
            "value": fmt(v),
            **({"lr": lrs[i]} if lrs is not None else {}),
            "median final loss": float(np.median(finals)),
            "seeds: best – worst": f"{number_text(float(np.min(finals)))} – {number_text(float(np.max(finals)))}",
            "median path length": float(np.median([t.path_length for t in r.runs])),
            "diverged": f"{r.summary.diverged}/{len(r.runs)}",
        })
    order = sorted(range(len(rows)), key=lambda i: (math.isnan(rows[i]["median final loss"]),
                                                    rows[i]["median final loss"]))
    ranked = []
    for rank, i in enumerate(order, 1):
        ranked.append({"rank": rank, **rows[i]})
    return ranked


def colours(names: Sequence[str]) -> dict[str, str]:
    return {n: colour_for(n, i) for i, n in enumerate(names)}


# --------------------------------------------------------------------------------- memory lesson
@st.cache_data(show_spinner=False)
def measured_state_bytes(sizes: tuple[int, ...] = (1_000, 10_000, 100_000), horizon: int = 10) -> list[dict]:
    """``app.lessons.measured_state_bytes`` (cached), each row with its optimizer's colour."""
    from app.lessons import measured_state_bytes as measure

    return [r | {"colour": colour_for(r["optimizer"])} for r in measure(sizes, horizon)]


def extrapolated_state_bytes(measured: Sequence[dict], sizes: Sequence[int]) -> list[dict]:
    """State bytes at larger sizes from the measured ones: each optimizer's bytes are fitted as
    ``a + b·P`` through its two largest measured sizes (exact for all of them: the state is either
    per-parameter or a fixed number of (seed, c) pairs)."""
    out = []
    by: dict[str, list[dict]] = {}
    for r in measured:
        by.setdefault(r["optimizer"], []).append(r)
    for name, rs in by.items():
        rs = sorted(rs, key=lambda r: r["params"])[-2:]
        (p0, b0), (p1, b1) = (rs[0]["params"], rs[0]["state_bytes"]), (rs[1]["params"], rs[1]["state_bytes"])
        slope = (b1 - b0) / (p1 - p0)
        for size in sizes:
            out.append(rs[0] | {"params": int(size), "state_bytes": int(round(b0 + slope * (size - p0))),
                                "measured": False})
    return out
