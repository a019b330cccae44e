"""One rank of the library-level data-parallel tests (``test_distributed.py`` starts two of these).

    python tests/optimizers/dist_worker.py SCENARIO RANK WORLD_SIZE STORE_FILE OUT_FILE

Joins a gloo group through a file store, runs SCENARIO and writes what it saw as JSON to OUT_FILE.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from optimizers import NonFiniteLossError, make_optimizer  # noqa: E402

STEPS = 4
N = 16


def problem() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """A small float64 MLP and a regression batch of N examples (the same on every rank)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 2)).double()
    x = torch.randn(N, 5, dtype=torch.float64)
    y = torch.randn(N, 2, dtype=torch.float64)
    return model, x, y


def train(name: str, rank: int, world: int, group, seed: int = 0) -> dict:
    """STEPS steps of ``name`` on this rank's contiguous slice of the batch; the losses and weights."""
    model, x, y = problem()
    lo, hi = rank * N // world, (rank + 1) * N // world
    hyper = {"lr": 1e-2, "hessian_smooth": 1e-3} if name == "hizoo" else {"lr": 1e-2}
    opt = make_optimizer(name, model.parameters(), seed=seed, process_group=group, **hyper)
    losses = []
    for _ in range(STEPS):
        losses.append(float(opt.step(lambda: torch.nn.functional.mse_loss(model(x[lo:hi]), y[lo:hi]))))
    return {"losses": losses, "forward_passes": opt.forward_passes,
            "weights": torch.cat([p.detach().reshape(-1) for p in model.parameters()]).tolist()}


def main() -> None:
    scenario, rank, world, store, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    group = dist.group.WORLD
    result: dict = {}
    try:
        if scenario == "equal":
            result = {name: train(name, rank, world, group) for name in ("mezo", "adamezo", "hizoo", "zo-adam")}
        elif scenario == "seeds":
            try:
                train("mezo", rank, world, group, seed=rank)
                result = {"error": None}
            except ValueError as e:
                result = {"error": str(e)}
        elif scenario == "nonfinite":
            model, x, y = problem()
            lo, hi = rank * N // world, (rank + 1) * N // world
            opt = make_optimizer("mezo", model.parameters(), lr=1e-2, seed=0, process_group=group)
            opt.step(lambda: torch.nn.functional.mse_loss(model(x[lo:hi]), y[lo:hi]))
            before = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).clone()
            calls = []

            def closure():  # rank 1's second loss of the step is NaN; rank 0's are all finite
                calls.append(1)
                loss = torch.nn.functional.mse_loss(model(x[lo:hi]), y[lo:hi])
                return loss * float("nan") if rank == 1 and len(calls) == 2 else loss
            try:
                opt.step(closure)
                result = {"error": None}
            except NonFiniteLossError as e:
                result = {"error": str(e)}
            after = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
            result |= {"steps": opt.steps, "max_change": float((after - before).abs().max()),
                       "weights": after.tolist()}
        elif scenario == "count":
            calls = []
            real = dist.all_reduce

            def counting(tensor, *args, **kwargs):
                calls.append([tensor.numel(), tensor.element_size()])
                return real(tensor, *args, **kwargs)

            dist.all_reduce = counting
            try:
                for name in ("mezo", "adamezo", "hizoo"):
                    calls.clear()
                    train(name, rank, world, group)
                    result[name] = list(calls)
            finally:
                dist.all_reduce = real
        else:
            raise SystemExit(f"unknown scenario {scenario!r}")
    finally:
        Path(out).write_text(json.dumps(result))
    dist.barrier()  # no rank tears the group down while another still talks to it
    dist.destroy_process_group()
    # Everything is written and the group is gone. Leave without the interpreter's teardown: gloo's
    # threads sometimes abort it ("terminate called without an active exception", exit -6; seen twice in
    # ~30 runs of this file under a busy pytest, never in 50 runs of the workers alone).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
