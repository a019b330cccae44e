"""Many trajectories at once, on any ``concurrent.futures`` executor (worker processes for several cores).

    from landscapes import TrajectoryJob, run_trajectories
    from landscapes.parallel import process_pool
    jobs = [TrajectoryJob(ls, name, 500, hyper={"lr": 0.01}, seed=s) for name in ("mezo", "adamezo") for s in range(4)]
    runs = run_trajectories(jobs)                        # in this process, one after another
    with process_pool(2) as pool:                        # the caller owns the pool and its lifetime
        runs = run_trajectories(jobs, executor=pool)     # one Trajectory per job, in order

A 2-D run is a few hundred microseconds of Python and small torch calls per step, so a single run
cannot use more than one core; independent runs can. The result is exactly ``run_trajectory`` of each
job (same floats, bit for bit: each worker runs the same code on the same float64 numbers, one torch
thread each). Jobs are sent as their landscape's ``recipe`` (see :func:`landscapes.from_recipe`), which
the worker rebuilds; a job whose landscape has no recipe (a ``Landscape`` built by hand) runs in the
calling process. Any executor works (threads too, though the GIL keeps them on about one core).

This module keeps no pool: :func:`process_pool` makes one configured for these jobs (fresh "spawn"
processes, one torch thread each) and :func:`warm_up` starts its workers ahead of time; whoever creates
a pool shuts it down (the app keeps one for its lifetime in ``app/compute.py``). Jobs can only name
optimizers of the ``optimizers`` registry as the workers import it (one registered by the calling
script is unknown there).
"""

from __future__ import annotations

import json
import multiprocessing
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import BrokenExecutor, CancelledError, Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from .engine import Trajectory, resolve, run_trajectory
from .landscape import Landscape, Point

#: Most worker processes :func:`process_pool` gives, whatever the machine (2-D runs are short; more
#: workers mostly cost memory: each one holds its own torch, ~300 MB).
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


def init_worker() -> None:
    """A worker's initializer: one torch thread (the workers share the cores; a 2-element run has
    nothing to split)."""
    import torch

    torch.set_num_threads(1)


def process_pool(processes: int | None = None) -> ProcessPoolExecutor:
    """A new pool of ``processes`` worker processes (default :func:`default_processes`, at most
    :data:`MAX_PROCESSES`) set up for trajectory jobs: "spawn" (a fresh interpreter per worker; forking a
    process that runs threads, a web server or torch's own pools, can deadlock the child) and
    :func:`init_worker`. The caller shuts it down (``with process_pool(2) as pool: ...``)."""
    if isinstance(processes, bool) or not (processes is None or (isinstance(processes, int) and processes >= 1)):
        raise ValueError(f"processes must be a positive integer or None, got {processes!r}")
    n = min(processes or default_processes(), MAX_PROCESSES)
    return ProcessPoolExecutor(max_workers=n, mp_context=multiprocessing.get_context("spawn"),
                               initializer=init_worker)


def _warm_up_job() -> bool:
    """Import and run everything a job needs once (the first run in a fresh process is ~2 s slower)."""
    for name in ("mezo", "adamezo", "adam"):
        run_trajectory("rosenbrock", name, 3)
    return True


def warm_up(executor: Executor, count: int) -> list[Future]:
    """Submit ``count`` warm-up jobs (returns at once): while no worker is idle each submit starts one, so
    a process pool starts ``count`` workers here. The futures are done when the workers are ready."""
    return [executor.submit(_warm_up_job) for _ in range(count)]


@lru_cache(maxsize=64)
def _landscape(recipe_json: str) -> Landscape:
    from .recipes import from_recipe

    return from_recipe(json.loads(recipe_json))


def _run_in_worker(recipe_json: str, name: str, steps: int, hyper: dict, start, seed: int, seed_budget,
                   max_loss) -> Trajectory:
    return run_trajectory(_landscape(recipe_json), name, steps, hyper, start, seed, seed_budget, max_loss)


def _check(job: Any, i: int) -> TrajectoryJob:
    if not isinstance(job, TrajectoryJob):
        raise ValueError(f"jobs[{i}] must be a TrajectoryJob, got {type(job).__name__}")
    return job


def run_trajectories(jobs: Sequence[TrajectoryJob], *, executor: Executor | None = None,
                     return_exceptions: bool = False,
                     on_broken: Callable[[Executor], None] | None = None) -> list[Trajectory | Exception]:
    """``run_trajectory`` of every job, in the order given, on ``executor`` (any ``concurrent.futures``
    executor; ``None``: in this process, one after another).

    With fewer than two jobs nothing is sent to the executor. A ``ValueError`` of a job (bad name or
    hyperparameter) is raised here, or, with ``return_exceptions=True``, put in that job's place so the
    other jobs' results are kept. If the executor is broken or shut down (a worker killed, out of memory)
    the jobs it lost run in this process and ``on_broken(executor)`` is called once, so that its owner
    can replace it.
    """
    if executor is not None and not isinstance(executor, Executor):
        raise ValueError(f"executor must be a concurrent.futures.Executor or None, got {type(executor).__name__}")
    jobs = [_check(job, i) for i, job in enumerate(jobs)]
    results: list[Any] = [None] * len(jobs)
    broken: list[Executor] = []

    def settle(i: int, compute) -> None:
        try:
            results[i] = compute()
        except ValueError as exc:
            if not return_exceptions:
                raise
            results[i] = exc

    def lost() -> None:
        if executor is not None and not broken:
            broken.append(executor)
            if on_broken is not None:
                on_broken(executor)

    remote: list[tuple[int, Future]] = []
    local: list[int] = []
    submitting = executor is not None and len(jobs) > 1
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
                remote.append((i, executor.submit(_run_in_worker, json.dumps(recipe, sort_keys=True), job.name,
                                                  job.steps, dict(job.hyper), job.start, job.seed,
                                                  job.seed_budget, job.max_loss)))
            except (BrokenExecutor, RuntimeError):  # broke while idle, or shut down by its owner
                lost()
                submitting = False
                local.append(i)
        for i in local:
            settle(i, jobs[i].run)
        for i, future in remote:
            try:
                settle(i, future.result)
            except (BrokenExecutor, CancelledError):  # a worker died, or the pool was shut down: run it here
                lost()
                settle(i, jobs[i].run)
    except BaseException:
        for _, future in remote:  # nobody will read them
            future.cancel()
        raise
    return results
