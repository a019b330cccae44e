"""Many trajectories at once, on several CPU cores: a pool of worker processes.

    from landscapes import TrajectoryJob, run_trajectories
    jobs = [TrajectoryJob(ls, name, 500, hyper={"lr": 0.01}, seed=s) for name in ("mezo", "adamezo") for s in range(4)]
    runs = run_trajectories(jobs)             # one Trajectory per job, in order

A 2-D run is a few hundred microseconds of Python and small torch calls per step, so a single run
cannot use more than one core; independent runs can. The result is exactly ``run_trajectory`` of each
job (same floats, bit for bit: each worker runs the same code on the same float64 numbers, one torch
thread each). Workers rebuild a landscape from its ``recipe`` (see :func:`landscapes.from_recipe`);
a job whose landscape has no recipe (a ``Landscape`` built by hand) runs in the calling process.

The pool is started on first use and kept for later calls (starting a worker imports torch: seconds);
a call that asks for more workers than it has gets a bigger one, and a pool that breaks (a worker
killed) is replaced, its jobs run in the calling process. :func:`start_pool` starts it ahead of time
without waiting, :func:`pool_ready` says whether it is up.
Workers do not import the caller's main module (see ``_bare_main``), so a script needs no
``if __name__ == "__main__":`` guard, and jobs can only name optimizers of the ``optimizers`` registry
as the workers import it (one registered by the calling script is unknown there).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import threading
import types
from contextlib import contextmanager
from collections.abc import Mapping, Sequence
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from .engine import Trajectory, resolve, run_trajectory
from .landscape import Landscape, Point

#: Most worker processes a pool gets, whatever the machine (2-D runs are short; more workers mostly
#: cost memory: each one holds its own torch, ~300 MB).
MAX_PROCESSES = 8


@dataclass(frozen=True)
class TrajectoryJob:
    """The arguments of one :func:`landscapes.run_trajectory` call."""

    landscape: Landscape | str
    name: str
    steps: int = 500
    hyper: Mapping[str, Any] = field(default_factory=dict)
    start: Point | None = None
    seed: int = 0
    seed_budget: int | None = None
    max_loss: float | None = None

    def run(self) -> Trajectory:
        return run_trajectory(self.landscape, self.name, self.steps, dict(self.hyper), self.start, self.seed,
                              self.seed_budget, self.max_loss)


def default_processes() -> int:
    """Worker processes a pool gets by default: the CPU cores this process may use, at most
    :data:`MAX_PROCESSES`."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_PROCESSES))


_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None
_pool_size = 0
_warm: list[Future] = []


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)  # the workers share the cores; a 2-element run has nothing to split


@lru_cache(maxsize=64)
def _landscape(recipe_json: str) -> Landscape:
    from .recipes import from_recipe

    return from_recipe(json.loads(recipe_json))


def _run_in_worker(recipe_json: str, name: str, steps: int, hyper: dict, start, seed: int, seed_budget,
                   max_loss) -> Trajectory:
    return run_trajectory(_landscape(recipe_json), name, steps, hyper, start, seed, seed_budget, max_loss)


def _warm_up() -> bool:
    """Import and run everything a job needs once (the first run in a fresh process is ~2 s slower)."""
    for name in ("mezo", "adamezo", "adam"):
        run_trajectory("rosenbrock", name, 3)
    return True


@contextmanager
def _bare_main():
    """Start workers without the caller's main script. A spawned worker first runs the parent's
    ``__main__`` again (as ``__mp_main__``); in a Streamlit app that module is the app script, whose
    top level draws a page, so every worker would run the app (and start a pool of its own, which
    fails). With a bare ``__main__`` while the workers start, they import only what their jobs need.
    The caller's module is put back unless someone else replaced it meanwhile (Streamlit sets it at the
    start of every script run; a worker started in that moment breaks the pool, which is then replaced)."""
    caller = sys.modules.get("__main__")
    bare = types.ModuleType("__main__")
    sys.modules["__main__"] = bare
    try:
        yield bare
    finally:
        if sys.modules.get("__main__") is bare:
            sys.modules["__main__"] = caller


def _get_pool(processes: int) -> ProcessPoolExecutor:
    """The running pool if it has at least ``processes`` workers, else a new one of that size."""
    global _pool, _pool_size, _warm
    processes = max(1, min(processes, MAX_PROCESSES))
    with _lock:
        if _pool is not None and _pool_size < processes:
            _pool.shutdown(wait=False)  # queued jobs of other callers still run; only new ones go elsewhere
            _pool = None
        if _pool is None:
            # "spawn": a fresh interpreter per worker. Forking a process that runs threads (a web
            # server, torch's own pools) can deadlock the child.
            pool = ProcessPoolExecutor(max_workers=processes, mp_context=multiprocessing.get_context("spawn"),
                                       initializer=_init_worker)
            # While no worker is idle, each submit starts one: these start all of them, here.
            with _bare_main() as bare:
                warm = []
                for _ in range(processes):
                    sys.modules["__main__"] = bare
                    warm.append(pool.submit(_warm_up))
            _pool, _pool_size, _warm = pool, processes, warm
        return _pool


def _discard(pool: ProcessPoolExecutor) -> None:
    """Forget a pool that broke (a worker died: killed, out of memory); the next call starts a new one."""
    global _pool, _warm
    with _lock:
        if _pool is pool:
            _pool, _warm = None, []
    pool.shutdown(wait=False)


def start_pool(processes: int | None = None) -> None:
    """Start the worker processes now, in the background (returns at once). A pool already running
    with at least that many workers is kept."""
    _get_pool(processes or default_processes())


def pool_ready() -> bool:
    """Whether a pool is started and every one of its workers has answered."""
    with _lock:
        return _pool is not None and all(f.done() and not f.cancelled() and f.exception() is None for f in _warm)


def shutdown_pool() -> None:
    """Stop the worker processes (a later call starts new ones)."""
    global _pool, _warm
    with _lock:
        pool, _pool, _warm = _pool, None, []
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)


def _check(job: Any, i: int) -> TrajectoryJob:
    if not isinstance(job, TrajectoryJob):
        raise ValueError(f"jobs[{i}] must be a TrajectoryJob, got {type(job).__name__}")
    return job


def run_trajectories(jobs: Sequence[TrajectoryJob], *, processes: int | None = None,
                     return_exceptions: bool = False) -> list[Trajectory | Exception]:
    """``run_trajectory`` of every job, in the order given, on up to ``processes`` worker processes.

    ``processes``: ``None`` for :func:`default_processes`; 1 runs everything in this process (no pool).
    With fewer than two jobs nothing is sent to a pool. A ``ValueError`` of a job (bad name or
    hyperparameter) is raised here, or, with ``return_exceptions=True``, put in that job's place so the
    other jobs' results are kept.
    """
    if isinstance(processes, bool) or not (processes is None or (isinstance(processes, int) and processes >= 1)):
        raise ValueError(f"processes must be a positive integer or None, got {processes!r}")
    jobs = [_check(job, i) for i, job in enumerate(jobs)]
    processes = min(processes or default_processes(), MAX_PROCESSES)  # more would only cost memory
    results: list[Any] = [None] * len(jobs)

    def settle(i: int, compute) -> None:
        try:
            results[i] = compute()
        except ValueError as exc:
            if not return_exceptions:
                raise
            results[i] = exc

    remote: list[tuple[int, Future]] = []
    local: list[int] = []
    pool = _get_pool(processes) if processes > 1 and len(jobs) > 1 else None
    submitting = pool is not None
    try:
        # Longest first, so that the last job to start is a short one.
        for i in sorted(range(len(jobs)), key=lambda i: -jobs[i].steps):
            job = jobs[i]
            if not submitting:
                local.append(i)
                continue
            try:
                ls = resolve(job.landscape) if isinstance(job.landscape, str) else job.landscape
            except ValueError as exc:  # an unknown landscape name: this job's error
                if not return_exceptions:
                    raise
                results[i] = exc
                continue
            recipe = dict(getattr(ls, "recipe", {}) or {})
            if not recipe:
                local.append(i)
                continue
            try:
                remote.append((i, pool.submit(_run_in_worker, json.dumps(recipe, sort_keys=True), job.name,
                                              job.steps, dict(job.hyper), job.start, job.seed, job.seed_budget,
                                              job.max_loss)))
            except (BrokenProcessPool, RuntimeError):  # broke while idle, or shut down by another caller
                _discard(pool)
                submitting = False
                local.append(i)
        for i in local:
            settle(i, jobs[i].run)
        for i, future in remote:
            try:
                settle(i, future.result)
            except (BrokenProcessPool, CancelledError):
                # A worker died (killed, out of memory) or the pool was replaced: run it here; the
                # next call starts a new pool.
                _discard(pool)
                settle(i, jobs[i].run)
    except BaseException:
        for _, future in remote:  # nobody will read them
            future.cancel()
        raise
    return results
