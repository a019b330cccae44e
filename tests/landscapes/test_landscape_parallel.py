"""Many trajectories on any executor (worker processes, threads): the same runs, bit for bit, in the order
asked. The caller owns the pool."""

import dataclasses
from concurrent.futures import ThreadPoolExecutor, wait

import numpy as np
import pytest

from landscapes import TrajectoryJob, custom, get, parallel, run_trajectories, run_trajectory


@pytest.fixture(scope="module")
def pool():
    with parallel.process_pool(2) as executor:
        wait(parallel.warm_up(executor, 2))
        yield executor


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
    runs = run_trajectories(jobs, executor=pool)
    expected = [run_trajectory(j.landscape, j.name, j.steps, dict(j.hyper), j.start, j.seed, j.seed_budget)
                for j in jobs]
    assert [r.optimizer for r in runs] == ["adamezo", "mezo", "hizoo", "adam", "mezo"]
    assert all(same_run(a, b) for a, b in zip(runs, expected))
    assert runs[4].diverged_at == 15  # overflows to -inf (as in the engine's divergence test)
    # In this process (no executor) and on threads: the same again.
    assert all(same_run(a, b) for a, b in zip(run_trajectories(jobs), expected))
    with ThreadPoolExecutor(2) as threads:
        assert all(same_run(a, b) for a, b in zip(run_trajectories(jobs, executor=threads), expected))


def test_a_bad_job_raises_its_error_or_takes_its_place(pool):
    jobs = [TrajectoryJob("booth", "mezo", 20, {"lr": 0.01}), TrajectoryJob("booth", "adamezo", 20, {"lr": -1.0}),
            TrajectoryJob("booth", "adam", 20, {"lr": 0.1})]
    with pytest.raises(ValueError, match="lr"):
        run_trajectories(jobs, executor=pool)
    out = run_trajectories(jobs, executor=pool, return_exceptions=True)
    assert isinstance(out[1], ValueError) and "lr" in str(out[1])
    assert same_run(out[0], run_trajectory("booth", "mezo", 20, {"lr": 0.01}))
    assert same_run(out[2], run_trajectory("booth", "adam", 20, {"lr": 0.1}))


def test_a_landscape_without_a_recipe_runs_in_this_process(pool):
    ls = dataclasses.replace(get("booth"), recipe={})  # built by hand: workers could not rebuild it
    jobs = [TrajectoryJob(ls, "mezo", 30, {"lr": 0.01}), TrajectoryJob(ls, "adam", 30, {"lr": 0.1})]
    runs = run_trajectories(jobs, executor=pool)
    assert same_run(runs[0], run_trajectory(ls, "mezo", 30, {"lr": 0.01}))
    assert same_run(runs[1], run_trajectory(ls, "adam", 30, {"lr": 0.1}))


@pytest.mark.parametrize("processes", [0, -2, 1.5, True, "2"])
def test_bad_process_counts_executors_and_jobs_are_refused(processes):
    with pytest.raises(ValueError, match="processes must be a positive integer or None"):
        parallel.process_pool(processes)
    with pytest.raises(ValueError, match=r"executor must be a concurrent.futures.Executor or None, got int"):
        run_trajectories([TrajectoryJob("booth", "mezo", 5)], executor=2)
    with pytest.raises(ValueError, match=r"jobs\[1\] must be a TrajectoryJob, got tuple"):
        run_trajectories([TrajectoryJob("booth", "mezo", 5), ("booth", "mezo", 5)])


def test_an_unknown_landscape_takes_its_place_on_the_pool_too(pool):
    jobs = [TrajectoryJob("atlantis", "mezo", 20), TrajectoryJob("booth", "mezo", 20, {"lr": 0.01})]
    out = run_trajectories(jobs, executor=pool, return_exceptions=True)
    assert isinstance(out[0], ValueError) and "atlantis" in str(out[0])
    assert same_run(out[1], run_trajectory("booth", "mezo", 20, {"lr": 0.01}))


def test_jobs_of_a_pool_whose_workers_died_run_here_and_its_owner_is_told():
    import multiprocessing
    import os
    import signal
    import time

    told = []
    with parallel.process_pool(2) as executor:
        wait(parallel.warm_up(executor, 2))
        workers = multiprocessing.active_children()
        assert len(workers) >= 2
        for w in workers:
            os.kill(w.pid, signal.SIGKILL)  # as the kernel does when memory runs out
        time.sleep(0.5)
        jobs = [TrajectoryJob("booth", "mezo", 40, {"lr": 0.01}, seed=s) for s in range(3)]
        runs = run_trajectories(jobs, executor=executor, on_broken=told.append)
        assert all(same_run(r, j.run()) for r, j in zip(runs, jobs))
        assert told == [executor]  # once: the owner replaces it
        runs = run_trajectories(jobs, executor=executor, on_broken=told.append)  # still broken: still computed
        assert all(same_run(r, j.run()) for r, j in zip(runs, jobs)) and told == [executor, executor]
