"""Data parallel on this machine: bytes communicated per step and steps per second, N = 1 against N = 2.

    python -m benchmarks.data_parallel                  # the table (bundled tiny OPT + sentiment task, batch 16)
    python -m benchmarks.data_parallel --steps 40 --repeats 5 --optimizers mezo adamezo hizoo adam

Both measurements run the real command line: N = 1 is ``python -m llm_demo.finetune``, N = 2 is
``python -m torch.distributed.run --standalone --nproc-per-node 2 -m llm_demo.finetune`` (gloo on the
CPU), the same settings otherwise, run side by side in alternation (1, 2, 1, 2, ...) ``--repeats`` times;
the table gives medians. Steps per second = steps / the run's ``wall_time_s`` (the time inside the
training steps, without start-up, loading and evaluation).

Bytes: one more N = 2 run per optimizer under ``count``, which wraps ``torch.distributed.all_reduce``
(every all-reduce the ZO optimizers, the stop agreement and the loss average make) and registers a DDP
communication hook that counts the gradient buckets DDP all-reduces (Adam); the payload bytes one rank
contributes per training step. (A ring all-reduce puts about 2·(N−1)/N times the payload on each rank's
wire.)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COUNT_ENV = "ADAMEZO_COUNT_OUT"


def command(n: int, optimizer: str, steps: int, out: Path, count: bool = False) -> list[str]:
    args = ["--optimizer", optimizer, "--steps", str(steps), "--eval-every", str(10**6), "--checkpoint-every",
            str(10**6), "--batch-size", "16", "--device", "cpu", "--out", str(out), "--quiet"]
    module = ["-m", "benchmarks.data_parallel", "count"] if count else ["-m", "llm_demo.finetune"]
    if n == 1 and not count:
        return [sys.executable, *module, *args]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(n), *module, *args]


def run(cmd: list[str], env: dict | None = None) -> None:
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=(os.environ | (env or {})))
    if done.returncode:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{done.stderr[-3000:]}")


def steps_per_second(out: Path) -> float:
    last = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()][-1]
    return last["step"] / last["wall_time_s"]


def count_main(argv: list[str]) -> int:
    """Under torchrun: run the fine-tune with every all-reduce and DDP bucket counted; rank 0 writes the totals."""
    import torch.distributed as dist

    from llm_demo import distributed, finetune

    calls: list[tuple[str, int]] = []
    real = dist.all_reduce
    in_hook: list[bool] = [False]  # DDP's default hook all-reduces through dist.all_reduce: count it once

    def counting(tensor, *args, **kwargs):
        calls.append(("ddp_bucket" if in_hook[0] else "all_reduce", tensor.numel() * tensor.element_size()))
        return real(tensor, *args, **kwargs)

    dist.all_reduce = counting
    wrap = distributed.wrap_model

    def wrap_counting(model, zeroth_order):
        wrapped = wrap(model, zeroth_order)
        if wrapped is not model:
            from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

            def hook(state, bucket):
                in_hook[0] = True
                try:
                    return allreduce_hook(state, bucket)
                finally:
                    in_hook[0] = False

            wrapped.register_comm_hook(None, hook)
        return wrapped

    distributed.wrap_model = wrap_counting
    code = finetune.main(argv)
    if os.environ.get("RANK", "0") == "0":
        Path(os.environ[COUNT_ENV]).write_text(json.dumps(calls))
    return code


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--optimizers", nargs="+", default=["mezo", "adamezo", "hizoo", "adam"])
    args = p.parse_args()
    speeds: dict[tuple[str, int], list[float]] = {}
    sent: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name in args.optimizers:
            out = tmp / f"count-{name}"
            run(command(2, name, args.steps, out, count=True), {COUNT_ENV: str(tmp / f"count-{name}.json")})
            calls = json.loads((tmp / f"count-{name}.json").read_text())
            sent[name] = {"bytes_per_step": sum(b for _, b in calls) / args.steps,
                          "all_reduces_per_step": len(calls) / args.steps,
                          "gradient_bytes_per_step": sum(b for k, b in calls if k == "ddp_bucket") / args.steps}
        for r in range(args.repeats):
            for name in args.optimizers:
                for n in (1, 2):
                    out = tmp / f"{name}-{n}-{r}"
                    run(command(n, name, args.steps, out))
                    speeds.setdefault((name, n), []).append(steps_per_second(out))
                    print(f"repeat {r + 1}/{args.repeats} {name} N={n}: {speeds[(name, n)][-1]:.1f} steps/s",
                          file=sys.stderr)
    print(f"{time.strftime('%Y-%m-%d')}, {platform.machine()}, {os.cpu_count()} CPU cores, "
          f"python {platform.python_version()}, torch {__import__('torch').__version__}; bundled tiny OPT, "
          f"batch 16, {args.steps} steps, medians of {args.repeats}")
    print("| optimizer | all-reduces / step | bytes / step (payload, per rank) | steps/s N=1 | steps/s N=2 | N=2 / N=1 |")
    print("|---|---|---|---|---|---|")
    for name in args.optimizers:
        one, two = statistics.median(speeds[(name, 1)]), statistics.median(speeds[(name, 2)])
        s = sent[name]
        print(f"| {name} | {s['all_reduces_per_step']:g} | {s['bytes_per_step']:,.0f} | {one:.1f} | {two:.1f} | "
              f"{two / one:.2f} |")
    print(json.dumps({"speeds": {f"{k[0]}:{k[1]}": v for k, v in speeds.items()}, "sent": sent}))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "count":
        sys.exit(count_main(sys.argv[2:]))
    main()
