"""What the LLM demo must show, measured on the bundled tiny OPT and sentiment task.

    python benchmarks/llm_finetune.py accuracy    # AdaMeZO, demo defaults, 500 steps: test accuracy and time
    python benchmarks/llm_finetune.py passes      # forward passes for AdaMeZO to reach MeZO's best dev loss
    python benchmarks/llm_finetune.py memory      # peak memory and optimizer-state bytes of every optimizer
    python benchmarks/llm_finetune.py all

Each run is a real ``python -m llm_demo.finetune`` process writing a run folder under --runs-dir,
so every figure can be checked against the records it came from.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path


def finetune(runs_dir: Path, name: str, optimizer: str, steps: int, *extra: str) -> list[dict]:
    """Run one fine-tune in a fresh process (or reuse a finished one) and return its records."""
    out = runs_dir / name
    status = out / "status.json"
    if not (status.exists() and json.loads(status.read_text())["status"] == "finished"):
        cmd = [sys.executable, "-m", "llm_demo.finetune", "--optimizer", optimizer, "--steps", str(steps),
               "--out", str(out), "--quiet", *extra]
        print("  $", " ".join(cmd[1:]), file=sys.stderr, flush=True)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


def accuracy(runs_dir: Path, seeds: list[int]) -> None:
    print("\n## AdaMeZO with the demo defaults, 500 steps (batch 16)\n")
    print("| seed | zero-shot test acc | test acc after 500 steps | best dev acc | training time (s) |")
    print("|---|---|---|---|---|")
    rows = []
    for seed in seeds:
        recs = finetune(runs_dir, f"acc-adamezo-s{seed}", "adamezo", 500, "--seed", str(seed), "--eval-every", "50")
        zero = recs[0]["eval_accuracy"]
        best = max(r["eval_accuracy"] for r in recs if "eval_accuracy" in r)
        rows.append((recs[-1]["test_accuracy"], recs[-1]["wall_time_s"]))
        print(f"| {seed} | (dev) {zero:.3f} | {recs[-1]['test_accuracy']:.3f} | {best:.3f} | {recs[-1]['wall_time_s']:.1f} |")
    print(f"\nmedian test accuracy {statistics.median(r[0] for r in rows):.3f}, "
          f"median training time {statistics.median(r[1] for r in rows):.1f} s")


def first_reach(records: list[dict], target: float) -> int | None:
    """Forward passes at the first evaluation whose dev loss is at or below ``target``."""
    for r in records:
        if "eval_loss" in r and r["eval_loss"] <= target:
            return r["forward_passes"]
    return None


def passes(runs_dir: Path, seeds: list[int], lrs: list[float], steps: int, every: int) -> None:
    print(f"\n## Forward passes to reach MeZO's best dev loss ({steps} MeZO steps, best lr of {lrs})\n")
    ratios = []
    print("| seed | MeZO best lr | MeZO best dev loss | MeZO passes to it | AdaMeZO passes to it | ratio |")
    print("|---|---|---|---|---|---|")
    for seed in seeds:
        best = None
        for lr in lrs:
            recs = finetune(runs_dir, f"passes-mezo-lr{lr:g}-s{seed}", "mezo", steps, "--seed", str(seed),
                            "--lr", str(lr), "--eval-every", str(every))
            loss = min(r["eval_loss"] for r in recs if "eval_loss" in r)
            if best is None or loss < best[1]:
                best = (lr, loss, first_reach(recs, loss))
        ada = finetune(runs_dir, f"passes-adamezo-s{seed}", "adamezo", steps, "--seed", str(seed),
                       "--eval-every", str(every))
        reached = first_reach(ada, best[1])
        ratio = reached / best[2] if reached else float("inf")
        ratios.append(ratio)
        print(f"| {seed} | {best[0]:g} | {best[1]:.4f} | {best[2]} | {reached if reached else 'not reached'} | "
              f"{ratio:.2f} |")
    print(f"\nmedian ratio AdaMeZO / MeZO forward passes: {statistics.median(ratios):.2f}")


def memory(runs_dir: Path, steps: int) -> None:
    print(f"\n## Peak memory and optimizer state on the bundled model ({steps} steps, each in its own process)\n")
    print("| optimizer | peak memory (MB) | x MeZO | optimizer state (bytes) | forward passes/step | s/step |")
    print("|---|---|---|---|---|---|")
    base = None
    for name in ("mezo", "adamezo", "zo-adam", "hizoo", "adam"):
        recs = finetune(runs_dir, f"memory-{name}", name, steps, "--eval-every", str(steps))
        last = recs[-1]
        base = base or last["peak_memory_bytes"]
        print(f"| {name} | {last['peak_memory_bytes'] / 2**20:.0f} | {last['peak_memory_bytes'] / base:.3f} | "
              f"{last['optimizer_state_bytes']:,} | {last['forward_passes'] / last['step']:.0f} | "
              f"{last['wall_time_s'] / last['step']:.4f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["accuracy", "passes", "memory", "all"])
    p.add_argument("--runs-dir", default="runs/benchmark")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--mezo-lrs", type=float, nargs="+", default=[3e-5, 1e-4, 3e-4])
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--eval-every", type=int, default=25)
    args = p.parse_args()
    runs_dir = Path(args.runs_dir)
    t = time.time()
    if args.what in ("accuracy", "all"):
        accuracy(runs_dir, args.seeds)
    if args.what in ("passes", "all"):
        passes(runs_dir, args.seeds, args.mezo_lrs, args.steps, args.eval_every)
    if args.what in ("memory", "all"):
        memory(runs_dir, 50)
    print(f"\n(benchmark took {time.time() - t:.0f} s)")


if __name__ == "__main__":
    main()
