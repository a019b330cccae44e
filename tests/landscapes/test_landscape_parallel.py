"""Many trajectories on worker processes: the same runs, bit for bit, in the order asked."""

import dataclasses
import time

import numpy as np
import pytest

from landscapes import TrajectoryJob, custom, get, parallel, run_trajectories, run_trajectory


@pytest.fixture(scope="module")
def pool():
    parallel.start_pool(2)
    yield
    parallel.shutdown_pool()


def wait_ready(timeout: float = 60) -> None:
    """The pool's workers all answer (a worker may still be starting when another has run every job)."""
    end = time.monotonic() + timeout
    while not parallel.pool_ready():
        assert time.monotonic() < end, "the pool's workers did not all start"
        time.sleep(0.1)


def same_run(a, b) -> bool:
    return (np.array_equal(a.xy, b.xy) and np.array_equal(a.loss, b.loss)
            and np.array_equal(a.forward_passes, b.forward_passes) and a.diverged_at == b.diverged_at
            and (a.optimizer, a.seed, a.seed_budget, a.steps) == (b.optimizer, b.seed, b.seed_budget, b.steps))


def test_pool_runs_equal_run_trajectory_bit_for_bit_in_the_order_given(pool):
    ls = get("quadratic", kappa=30, angle=20)
    formula = custom("x**2 + 10*y**2 + sin(3*x)", domain=((-2, 2), (-2, 2)), start=(1.5, 1.2))
    jobs = [TrajectoryJob(ls, "adamezo", 120, {"lr": 0.02, "horizon": 5}, seed=3, seed_budget=4),
            TrajectoryJob("rosenbrock", "mezo", 300, {"lr": 0.002}, start=(-1.0, 2.0), seed=7),
            TrajectoryJob(formula, "hizoo", 80, {"lr": 0.01}, seed=1),
            TrajectoryJob(ls, "adam", 200, {"lr": 0.05}),
            TrajectoryJob(custom("-exp(x) + y**2", ((-2, 2), (-2, 2)), (0.0, 0.5)), "mezo", 500, {"lr": 0.1})]
    runs = run_trajectories(jobs, processes=2)
    wait_ready()
    expected = [run_trajectory(j.landscape, j.name, j.steps, dict(j.hyper), j.start, j.seed, j.seed_budget)
                for j in jobs]
    assert [r.optimizer for r in runs] == ["adamezo", "mezo", "hizoo", "adam", "mezo"]
    assert all(same_run(a, b) for a, b in zip(runs, expected))
    assert runs[4].diverged_at == 15  # overflows to -inf (as in the engine's divergence test)
    # In this process (processes=1): the same again.
    assert all(same_run(a, b) for a, b in zip(run_trajectories(jobs, processes=1), expected))


def test_a_bad_job_raises_its_error_or_takes_its_place(pool):
    jobs = [TrajectoryJob("booth", "mezo", 20, {"lr": 0.01}), TrajectoryJob("booth", "adamezo", 20, {"lr": -1.0}),
            TrajectoryJob("booth", "adam", 20, {"lr": 0.1})]
    with pytest.raises(ValueError, match="lr"):
        run_trajectories(jobs, processes=2)
    out = run_trajectories(jobs, processes=2, return_exceptions=True)
    assert isinstance(out[1], ValueError) and "lr" in str(out[1])
    assert same_run(out[0], run_trajectory("booth", "mezo", 20, {"lr": 0.01}))
    assert same_run(out[2], run_trajectory("booth", "adam", 20, {"lr": 0.1}))


def test_a_landscape_without_a_recipe_runs_in_this_process(pool):
    ls = dataclasses.replace(get("booth"), recipe={})  # built by hand: workers could not rebuild it
    jobs = [TrajectoryJob(ls, "mezo", 30, {"lr": 0.01}), TrajectoryJob(ls, "adam", 30, {"lr": 0.1})]
    runs = run_trajectories(jobs, processes=2)
    assert same_run(runs[0], run_trajectory(ls, "mezo", 30, {"lr": 0.01}))
    assert same_run(runs[1], run_trajectory(ls, "adam", 30, {"lr": 0.1}))


@pytest.mark.parametrize("processes", [0, -2, 1.5, True, "2"])
def test_bad_process_counts_and_jobs_are_refused(processes):
    with pytest.raises(ValueError, match="processes must be a positive integer or None"):
        run_trajectories([TrajectoryJob("booth", "mezo", 5)], processes=processes)
    with pytest.raises(ValueError, match=r"jobs\[1\] must be a TrajectoryJob, got tuple"):
        run_trajectories([TrajectoryJob("booth", "mezo", 5), ("booth", "mezo", 5)], processes=1)


def test_an_unknown_landscape_takes_its_place_on_the_pool_too(pool):
    jobs = [TrajectoryJob("atlantis", "mezo", 20), TrajectoryJob("booth", "mezo", 20, {"lr": 0.01})]
    out = run_trajectories(jobs, processes=2, return_exceptions=True)
    assert isinstance(out[0], ValueError) and "atlantis" in str(out[0])
    assert same_run(out[1], run_trajectory("booth", "mezo", 20, {"lr": 0.01}))


def test_a_pool_whose_workers_died_is_replaced_and_its_jobs_run_here(pool):
    import multiprocessing
    import os
    import signal

    run_trajectories([TrajectoryJob("booth", "mezo", 5), TrajectoryJob("booth", "adam", 5)], processes=2)
    workers = multiprocessing.active_children()
    assert len(workers) >= 2
    for w in workers:
        os.kill(w.pid, signal.SIGKILL)  # as the kernel does when memory runs out
    time.sleep(0.5)
    jobs = [TrajectoryJob("booth", "mezo", 40, {"lr": 0.01}, seed=s) for s in range(3)]
    runs = run_trajectories(jobs, processes=2)
    assert all(same_run(r, j.run()) for r, j in zip(runs, jobs))
    # The next call gets a new pool that works.
    runs = run_trajectories(jobs, processes=2)
    assert all(same_run(r, j.run()) for r, j in zip(runs, jobs))
    wait_ready()
    assert not {w.pid for w in workers} & {w.pid for w in multiprocessing.active_children()}
