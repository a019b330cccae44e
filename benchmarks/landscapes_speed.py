"""Speed of the 2-D trajectory engine: 3 optimizers × 500 steps on Rosenbrock.

    python benchmarks/landscapes_speed.py [--repeats 7] [--steps 500] [--threads N]

Prints, per optimizer and for the three together, the median over ``--repeats`` of the CPU time
(``time.process_time``, all threads of this process) and the wall time, after one warm-up round
(the first torch calls of a process pay a one-off start-up cost). The target is under 1 s of CPU for
MeZO + AdaMeZO + Adam, 500 steps each. Also prints the CPU time of the same optimizer steps in a
bare loop (no recording), the cost of the engine's per-step recording on its own, and the wall time
of the three runs through ``landscapes.run_trajectories`` in this process and on worker processes
(``--processes``, default the CPU cores), alternating, once the workers are up.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from concurrent.futures import wait
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from landscapes import TrajectoryJob, get, parallel, run_trajectories, run_trajectory  # noqa: E402
from optimizers import make_optimizer  # noqa: E402

RUNS = [
    ("mezo", {"lr": 1e-3}),
    ("adamezo", {"lr": 3e-2, "betas": (0.7, 0.9), "horizon": 10, "warmup": "partial"}),
    ("adam", {"lr": 1e-2}),
]


def timed(fn) -> tuple[float, float]:
    c0, w0 = time.process_time(), time.perf_counter()
    fn()
    return time.process_time() - c0, time.perf_counter() - w0


def bare_loop(ls, name: str, hyper: dict, steps: int) -> None:
    theta = torch.nn.Parameter(torch.tensor(ls.start, dtype=torch.float64))
    opt = make_optimizer(name, [theta], seed=0, **hyper)
    for _ in range(steps):
        opt.step(lambda: ls.f(theta))


def recording_cost(steps: int, repeats: int = 50) -> float:
    """CPU seconds per step of what the engine adds to each optimizer step (two array writes)."""
    theta = torch.nn.Parameter(torch.tensor([0.5, 0.5], dtype=torch.float64))
    opt = make_optimizer("mezo", [theta])
    positions = np.empty((steps + 1, 2))
    passes = np.zeros(steps + 1, dtype=np.int64)
    flat = theta.detach().numpy()
    c0 = time.process_time()
    for _ in range(repeats):
        for t in range(1, steps + 1):
            positions[t] = flat
            passes[t] = opt.forward_passes
    return (time.process_time() - c0) / (repeats * steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--processes", type=int, default=None, help="worker processes (default: the CPU cores)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    ls = get("rosenbrock")

    for name, hyper in RUNS:  # warm-up
        run_trajectory(ls, name, 20, hyper)

    cpu: dict[str, list[float]] = {name: [] for name, _ in RUNS}
    wall: dict[str, list[float]] = {name: [] for name, _ in RUNS}
    bare: dict[str, list[float]] = {name: [] for name, _ in RUNS}
    totals_cpu, totals_wall = [], []
    for _ in range(args.repeats):
        tc = tw = 0.0
        for name, hyper in RUNS:
            c, w = timed(lambda: run_trajectory(ls, name, args.steps, hyper, seed=0))
            cpu[name].append(c)
            wall[name].append(w)
            tc += c
            tw += w
            bare[name].append(timed(lambda: bare_loop(ls, name, hyper, args.steps))[0])
        totals_cpu.append(tc)
        totals_wall.append(tw)

    print(f"python {platform.python_version()}, torch {torch.__version__}, {os.cpu_count()} CPUs, "
          f"torch threads {torch.get_num_threads()}; Rosenbrock from {ls.start}, {args.steps} steps, "
          f"median of {args.repeats} repeats")
    print(f"{'optimizer':10s} {'CPU s':>8s} {'wall s':>8s} {'us/step':>8s} {'bare loop CPU s':>16s}")
    for name, _ in RUNS:
        c, w, b = statistics.median(cpu[name]), statistics.median(wall[name]), statistics.median(bare[name])
        print(f"{name:10s} {c:8.3f} {w:8.3f} {1e6 * c / args.steps:8.0f} {b:16.3f}")
    total = statistics.median(totals_cpu)
    print(f"{'total':10s} {total:8.3f} {statistics.median(totals_wall):8.3f}")
    print(f"engine recording per step: {1e6 * recording_cost(args.steps):.2f} us "
          "(plus one vectorized loss evaluation per run)")
    print(f"3 optimizers x {args.steps} steps: {total:.3f} s CPU ({'under' if total < 1 else 'OVER'} the 1 s target)")

    processes = args.processes or parallel.default_processes()
    with parallel.process_pool(processes) as pool:
        wait(parallel.warm_up(pool, processes))
        jobs = [TrajectoryJob(ls, name, args.steps, hyper) for name, hyper in RUNS]
        here, pooled = [], []
        for _ in range(args.repeats):
            here.append(timed(lambda: run_trajectories(jobs))[1])
            pooled.append(timed(lambda: run_trajectories(jobs, executor=pool))[1])
    h, p = statistics.median(here), statistics.median(pooled)
    print(f"the three through run_trajectories, wall s: in this process {h:.3f}, on {processes} worker processes "
          f"{p:.3f} (ratio {p / h:.2f})")


if __name__ == "__main__":
    main()
