"""What the LLM demo must show, measured on the bundled tiny OPT and sentiment task.

    python benchmarks/llm_finetune.py accuracy    # AdaMeZO, demo defaults, 500 steps: test accuracy and time
    python benchmarks/llm_finetune.py passes      # forward passes for AdaMeZO to reach MeZO's best dev loss
    python benchmarks/llm_finetune.py passes --jobs 2   # the same, two fine-tunes at a time
    python benchmarks/llm_finetune.py memory      # peak memory and optimizer-state bytes of every optimizer
    python benchmarks/llm_finetune.py plot        # dev loss against forward passes from the passes runs (PNG)
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

DIVERGED = "NonFiniteLossError"


def finetune(runs_dir: Path, name: str, optimizer: str, steps: int, *extra: str) -> list[dict]:
    """Run one fine-tune in a fresh process (or reuse a finished one) and return its records.

    A run that diverges (the loss became non-finite: a deterministic outcome of its setting, e.g. too
    large an lr) keeps the records it wrote before; any other failure stops the benchmark.
    """
    out = runs_dir / name
    status = out / "status.json"

    def done() -> bool:
        if not status.exists():
            return False
        info = json.loads(status.read_text())
        return info["status"] == "finished" or DIVERGED in info.get("error", "")

    if not done():
        cmd = [sys.executable, "-m", "llm_demo.finetune", "--optimizer", optimizer, "--steps", str(steps),
               "--out", str(out), "--quiet", "--overwrite", *extra]  # a run left unfinished starts again
        print("  $", " ".join(cmd[1:]), file=sys.stderr, flush=True)
        subprocess.run(cmd, stdout=subprocess.DEVNULL)
        if not done():
            raise RuntimeError(f"{name} failed: {status.read_text() if status.exists() else 'no status'}")
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


def accuracy(runs_dir: Path, seeds: list[int]) -> None:
    print("\n## AdaMeZO with the demo defaults, 500 steps (batch 16)\n")
    print("| seed | zero-shot dev acc | test acc after 500 steps | best dev acc | training time (s) |")
    print("|---|---|---|---|---|")
    rows = []
    for seed in seeds:
        recs = finetune(runs_dir, f"acc-adamezo-s{seed}", "adamezo", 500, "--seed", str(seed), "--eval-every", "50")
        zero = recs[0]["eval_accuracy"]
        best = max(r["eval_accuracy"] for r in recs if "eval_accuracy" in r)
        rows.append((recs[-1]["test_accuracy"], recs[-1]["wall_time_s"]))
        print(f"| {seed} | {zero:.3f} | {recs[-1]['test_accuracy']:.3f} | {best:.3f} | {recs[-1]['wall_time_s']:.1f} |")
    print(f"\nmedian test accuracy {statistics.median(r[0] for r in rows):.3f}, "
          f"median training time {statistics.median(r[1] for r in rows):.1f} s")


def first_reach(records: list[dict], target: float) -> int | None:
    """Forward passes at the first evaluation whose dev loss is at or below ``target``."""
    for r in records:
        if "eval_loss" in r and r["eval_loss"] <= target:
            return r["forward_passes"]
    return None


def passes(runs_dir: Path, seeds: list[int], lrs: list[float], steps: int, every: int, jobs: int = 1,
           ada_lrs: list[float | None] = (None,)) -> None:
    ada_text = ", ".join("default" if lr is None else f"{lr:g}" for lr in ada_lrs)
    print(f"\n## Forward passes to reach MeZO's best dev loss ({steps} MeZO steps, best lr of {lrs}; "
          f"AdaMeZO lr: {ada_text})\n")
    # Every run is independent and the figure is a count of forward passes, not a time, so the runs
    # may share the cores (--jobs); the records do not depend on it.
    plan = {(seed, lr): (f"passes-mezo-lr{lr:g}-s{seed}", "mezo", steps, "--seed", str(seed), "--lr", str(lr),
                         "--eval-every", str(every)) for seed in seeds for lr in lrs}
    for seed in seeds:
        for lr in ada_lrs:
            name, flags = (f"passes-adamezo-s{seed}", ()) if lr is None else \
                (f"passes-adamezo-lr{lr:g}-s{seed}", ("--lr", str(lr)))
            plan[seed, "adamezo", lr] = (name, "adamezo", steps, "--seed", str(seed), *flags,
                                         "--eval-every", str(every))
    with ThreadPoolExecutor(max(1, jobs)) as pool:
        futures = {key: pool.submit(finetune, runs_dir, *args) for key, args in plan.items()}
        records = {key: future.result() for key, future in futures.items()}
    ratios = []
    print("| seed | MeZO best lr | MeZO best dev loss | MeZO passes to it | AdaMeZO lr | AdaMeZO passes to it | ratio |")
    print("|---|---|---|---|---|---|---|")
    for seed in seeds:
        best = None
        for lr in lrs:
            recs = records[seed, lr]
            loss = min(r["eval_loss"] for r in recs if "eval_loss" in r)
            if best is None or loss < best[1]:
                best = (lr, loss, first_reach(recs, loss))
        # AdaMeZO's lr (when several are given): the one that gets there in the fewest passes.
        reach = {lr: first_reach(records[seed, "adamezo", lr], best[1]) for lr in ada_lrs}
        ada_lr = min(ada_lrs, key=lambda lr: reach[lr] if reach[lr] is not None else float("inf"))
        reached = reach[ada_lr]
        ratio = reached / best[2] if reached else float("inf")
        ratios.append(ratio)
        edge = " (edge of the grid)" if best[0] in (min(lrs), max(lrs)) and len(lrs) > 1 else ""
        print(f"| {seed} | {best[0]:g}{edge} | {best[1]:.4f} | {best[2]} | "
              f"{'default' if ada_lr is None else f'{ada_lr:g}'} | {reached if reached else 'not reached'} | "
              f"{ratio:.2f} |")
    short = [f"{plan[key][0]} (step {recs[-1]['step']})" for key, recs in records.items() if recs[-1]["step"] < steps]
    if short:
        print("\ndiverged (loss became non-finite; counted with the evaluations before): " + "; ".join(short))
    print(f"\nmedian ratio AdaMeZO / MeZO forward passes: {statistics.median(ratios):.2f}")


def memory(runs_dir: Path, steps: int) -> None:
    print(f"\n## Peak memory and optimizer state on the bundled model ({steps} steps, each in its own process)\n")
    print("| optimizer | peak memory (MB) | x MeZO | optimizer state (bytes) | forward passes/step | s/step |")
    print("|---|---|---|---|---|---|")
    from optimizers import OPTIMIZERS

    base = None
    for name in OPTIMIZERS:  # every optimizer of the registry, MeZO first
        recs = finetune(runs_dir, f"memory-{name}", name, steps, "--eval-every", str(steps))
        last = recs[-1]
        base = base or last["peak_memory_bytes"]
        print(f"| {name} | {last['peak_memory_bytes'] / 2**20:.0f} | {last['peak_memory_bytes'] / base:.3f} | "
              f"{last['optimizer_state_bytes']:,} | {last['forward_passes'] / last['step']:.0f} | "
              f"{last['wall_time_s'] / last['step']:.4f} |")


def plot(runs_dir: Path, seeds: list[int], lrs: list[float], out: Path) -> None:
    """Dev loss against forward passes: MeZO at every lr of the grid and AdaMeZO at its default, one
    panel per seed, from the run folders the passes benchmark wrote (matplotlib, PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(seeds), figsize=(4.2 * len(seeds), 3.4), sharey=True, squeeze=False)
    for ax, seed in zip(axes[0], seeds):
        runs = [(f"MeZO lr {lr:g}", runs_dir / f"passes-mezo-lr{lr:g}-s{seed}", "-") for lr in lrs]
        runs.append(("AdaMeZO (defaults)", runs_dir / f"passes-adamezo-s{seed}", "-"))
        lowest = float("inf")
        for i, (label, path, style) in enumerate(runs):
            metrics = path / "metrics.jsonl"
            if not metrics.exists():
                raise FileNotFoundError(f"{metrics} is missing: run the passes benchmark first")
            recs = [json.loads(x) for x in metrics.read_text().splitlines()]
            ev = [(r["forward_passes"], r["eval_loss"]) for r in recs if "eval_loss" in r]
            ada = label.startswith("AdaMeZO")
            if ev[-1][1] > 10 * ev[0][1]:
                label += " (diverges)"
            ax.plot(*zip(*ev), style, label=label, lw=2.2 if ada else 1.2,
                    color="#d62728" if ada else plt.cm.Blues(0.35 + 0.6 * i / max(1, len(lrs) - 1)))
            lowest = min(lowest, min(v for _, v in ev))
        ax.set_yscale("log")
        ax.set_ylim(lowest * 0.7, 1.0)  # a diverging lr leaves through the top
        ax.set_title(f"seed {seed}")
        ax.set_xlabel("forward passes")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("dev loss")
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


def lr_or_default(text: str) -> float | None:
    if text == "default":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number or 'default'") from None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["accuracy", "passes", "memory", "plot", "all"])
    p.add_argument("--runs-dir", default="runs/benchmark")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--mezo-lrs", type=float, nargs="+", default=[1e-4, 3e-4, 1e-3, 3e-3])
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--eval-every", type=int, default=25)
    p.add_argument("--adamezo-lrs", type=lr_or_default, nargs="+", default=None,
                   help="AdaMeZO lrs to try ('default': its demo default; the fewest passes counts)")
    p.add_argument("--plot", default="docs/llm_passes.png", help="where the plot subcommand writes its PNG")
    p.add_argument("--jobs", type=int, default=1,
                   help="fine-tunes of the passes benchmark run at once (counts, not times, so they may share)")
    args = p.parse_args()
    runs_dir = Path(args.runs_dir)
    t = time.time()
    if args.what in ("accuracy", "all"):
        accuracy(runs_dir, args.seeds)
    if args.what in ("passes", "all"):
        passes(runs_dir, args.seeds, args.mezo_lrs, args.steps, args.eval_every, args.jobs,
               args.adamezo_lrs or [None])
    if args.what in ("memory", "all"):
        memory(runs_dir, 50)
    if args.what in ("plot", "all"):
        plot(runs_dir, args.seeds, args.mezo_lrs, Path(args.plot))
    print(f"\n(benchmark took {time.time() - t:.0f} s)")


if __name__ == "__main__":
    main()
