"""The app's run cache: a setting's missing runs are computed together, on worker processes when they
are up, and equal the library's own runs."""

from __future__ import annotations

import time

import numpy as np
import pytest

import landscapes
from app import compute


def wait_for_workers(timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while not compute.POOL.ready():
        assert time.monotonic() < end, "the worker processes did not start"
        time.sleep(0.1)


def test_prefetch_computes_only_the_missing_runs_together_on_the_workers(monkeypatch):
    monkeypatch.setenv("ADAMEZO_APP_PROCESSES", "2")
    compute.start_workers()
    wait_for_workers()
    compute.RUNS.clear()
    batches = []
    real = landscapes.run_trajectories
    monkeypatch.setattr(landscapes, "run_trajectories",
                        lambda jobs, **k: batches.append([(j.name, j.seed) for j in jobs]) or real(jobs, **k))
    key = compute.landscape_key("rosenbrock")
    start = (-1.0, 1.5)
    ask = lambda n, lr, seed: (key, n, 300, compute.hyper_items({"lr": lr}), start, seed, None)  # noqa: E731
    compute.prefetch([ask("mezo", 0.002, 0), ask("adamezo", 0.05, 0), ask("adam", 0.1, 0)])
    assert batches == [[("mezo", 0), ("adamezo", 0), ("adam", 0)]]
    # A new seed: Adam's run is cached for every seed, the two ZO runs are new.
    compute.prefetch([ask("mezo", 0.002, 1), ask("adamezo", 0.05, 1), ask("adam", 0.1, 1)])
    assert batches[1] == [("mezo", 1), ("adamezo", 1)]
    for n, lr, seed in (("mezo", 0.002, 1), ("adamezo", 0.05, 0), ("adam", 0.1, 1)):
        got = compute.trajectory(*ask(n, lr, seed))
        want = landscapes.run_trajectory("rosenbrock", n, 300, {"lr": lr}, start, seed)
        assert np.array_equal(got.xy, want.xy) and np.array_equal(got.loss, want.loss)
        assert got.seed == seed and not got.xy.flags.writeable  # cached runs are shared: read-only
    assert len(batches) == 2  # trajectory() found every run cached


def test_small_or_failing_work_stays_in_the_server_process(monkeypatch):
    monkeypatch.setenv("ADAMEZO_APP_PROCESSES", "2")
    compute.start_workers()
    wait_for_workers()  # up, so that only the size of the work keeps it here
    compute.RUNS.clear()
    real = landscapes.run_trajectories
    monkeypatch.setattr(landscapes, "run_trajectories", lambda *a, **k: pytest.fail("sent to the workers"))
    key = compute.landscape_key("booth")
    small = [(key, n, 50, compute.hyper_items({"lr": 0.01}), (1.0, 1.0), 0, None) for n in ("mezo", "adamezo")]
    compute.prefetch(small)  # 100 steps in all: below PARALLEL_MIN_STEPS
    assert all(compute.RUNS.get(compute._run_key(*r)) is not None for r in small)
    bad = (key, "mezo", 50, compute.hyper_items({"lr": -1.0}), (1.0, 1.0), 0, None)
    compute.prefetch([bad])
    with pytest.raises(ValueError, match="lr"):
        compute.trajectory(*bad)
    # A batch for the workers with one bad run: the good runs are kept, the bad one raises its error.
    monkeypatch.setattr(landscapes, "run_trajectories", real)
    batch = [(key, n, 300, compute.hyper_items({"lr": lr}), (1.0, 1.0), 0, None)
             for n, lr in (("mezo", 0.01), ("adamezo", -1.0), ("adam", 0.1))]
    compute.prefetch(batch)
    assert compute.RUNS.get(compute._run_key(*batch[0])) is not None
    assert compute.RUNS.get(compute._run_key(*batch[2])) is not None
    assert compute.RUNS.get(compute._run_key(*batch[1])) is None
    with pytest.raises(ValueError, match="lr"):
        compute.trajectory(*batch[1])


@pytest.mark.parametrize("raw, message", [
    ("two", "ADAMEZO_APP_PROCESSES='two' is not an integer; allowed: 1 (no worker processes) to 8"),
    ("0", "ADAMEZO_APP_PROCESSES=0 is out of range; allowed: 1 (no worker processes) to 8"),
    ("12", "ADAMEZO_APP_PROCESSES=12 is out of range; allowed: 1 (no worker processes) to 8"),
])
def test_bad_process_setting_is_refused_with_what_is_allowed(monkeypatch, raw, message):
    monkeypatch.setenv("ADAMEZO_APP_PROCESSES", raw)
    with pytest.raises(ValueError) as err:
        compute.processes()
    assert str(err.value) == message


def test_a_broken_pool_is_forgotten_and_its_runs_computed_here(monkeypatch):
    """The app owns its pool: when it breaks (here: shut down under it), the runs are computed in the
    server process and the pool is forgotten, so that the next start makes a new one."""
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setenv("ADAMEZO_APP_PROCESSES", "2")
    dead = ThreadPoolExecutor(1)
    dead.shutdown()
    monkeypatch.setattr(compute, "POOL", compute.WorkerPool())
    compute.POOL._executor, compute.POOL._size = dead, 2
    assert compute.POOL.ready()
    compute.RUNS.clear()
    key = compute.landscape_key("booth")
    batch = [(key, n, 300, compute.hyper_items({"lr": 0.01}), (1.0, 1.0), 0, None) for n in ("mezo", "adamezo")]
    compute.prefetch(batch)
    for r in batch:
        got, want = compute.RUNS.get(compute._run_key(*r)), landscapes.run_trajectory("booth", r[1], 300, {"lr": 0.01},
                                                                                      (1.0, 1.0), 0)
        assert np.array_equal(got.xy, want.xy)
    assert compute.POOL.executor() is None and not compute.POOL.ready()
