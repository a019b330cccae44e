"""Per-step benchmark of every optimizer on an OPT-125m-shaped model (random weights).

Each optimizer runs in its own fresh process (so peak memory is its own), one after the other in one
invocation, and the table reports time per step (median over the measured steps) and peak memory,
both relative to MeZO, plus the optimizer-state bytes, the direction regenerations per step and the
direction generator's cost per element.

    python benchmarks/optimizer_step.py                      # OPT-125m shape, batch 16 x 64, 3 steps
    python benchmarks/optimizer_step.py --shape tiny --steps 5
    python benchmarks/optimizer_step.py --optimizers mezo helene zo-adamu mezo:num_directions=4
    python benchmarks/optimizer_step.py --memory             # also one step measured by category (llm_demo.memory)

An optimizer is a registry name, optionally with hyperparameters after a colon (``NAME:KEY=VALUE,...``).

Peak memory is CUDA's max allocated bytes on a GPU, and the process's peak resident set size on the
CPU (it includes the model and the Python/torch runtime, as a user's process would).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

SHAPES = {
    # OPT-125m: hidden 768, 12 layers, 12 heads, ffn 3072, vocab 50272, 2048 positions
    "opt-125m": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, ffn_dim=3072,
                     vocab_size=50272, max_position_embeddings=2048, word_embed_proj_dim=768),
    "tiny": dict(hidden_size=128, num_hidden_layers=4, num_attention_heads=4, ffn_dim=512,
                 vocab_size=2048, max_position_embeddings=256, word_embed_proj_dim=128),
}
DEFAULT = ["mezo", "adamezo", "zo-adam", "hizoo", "helene", "zo-adamu", "adam"]


def parse_spec(spec: str) -> tuple[str, dict]:
    """``"mezo:num_directions=4"`` -> ``("mezo", {"num_directions": 4})`` (values read as int, float or text)."""
    name, _, rest = spec.partition(":")
    hyper = {}
    for item in filter(None, rest.split(",")):
        key, _, text = item.partition("=")
        for kind in (int, float, str):
            try:
                hyper[key] = kind(text)
                break
            except ValueError:
                continue
    return name, hyper


def peak_memory_bytes(device) -> int:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def generator_cost(device, n: int = 2**20, repeats: int = 15) -> float:
    """Median seconds per element of one keyed block generation (manual_seed + randn)."""
    import torch

    from optimizers import DirectionSampler

    sampler = DirectionSampler()
    times = []
    for i in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        sampler.block(i, 0, n, torch.float32, device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return statistics.median(times) / n


def worker(args) -> None:
    import torch
    from transformers import OPTConfig, OPTForCausalLM

    from optimizers import make_optimizer, state_bytes

    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    torch.manual_seed(0)
    model = OPTForCausalLM(OPTConfig(**SHAPES[args.shape], dropout=0.0, attention_dropout=0.0)).to(device)
    model.eval()  # no dropout: ZO methods need the same function at +εz and −εz
    n_params = sum(p.numel() for p in model.parameters())
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, SHAPES[args.shape]["vocab_size"], (args.batch, args.seq), generator=g).to(device)
    name, hyper = parse_spec(args.optimizer)
    hyper = ({"horizon": args.horizon} if name == "adamezo" else {}) | hyper
    opt = make_optimizer(name, model.parameters(), lr=1e-6, **hyper)
    if name == "adamezo" and int(hyper.get("num_directions", 1)) == 1:
        # Pre-fill the history with K − 1 pairs so that every measured step regenerates all K
        # directions (the steady state) instead of paying K warm-up steps of ~20 s each.
        opt._history = [(opt.seed_for_step(10**6 + i), 1e-12) for i in range(args.horizon - 1)]

    def closure():
        return model(input_ids=ids, labels=ids).loss

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    generated = getattr(opt, "generated_elements", 0)
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            generated = getattr(opt, "generated_elements", 0)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        opt.step(closure)
        if device.type == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - t
        if step >= args.warmup:
            times.append(elapsed)
        print(f"  {args.optimizer} step {step + 1}/{args.warmup + args.steps}: {elapsed:.2f} s"
              f"{' (warm-up)' if step < args.warmup else ''}", file=sys.stderr, flush=True)
    regenerations = (getattr(opt, "generated_elements", 0) - generated) / n_params / args.steps
    memory = None
    if args.memory:  # one more step, measured from its tensors (after the timed ones: it runs slower)
        from llm_demo.memory import measure_step

        memory = measure_step(model, opt, closure, state_bytes)[1]
    print(json.dumps({
        "optimizer": args.optimizer, "device": str(device), "params": n_params,
        "step_s": times, "median_step_s": statistics.median(times),
        "peak_memory_bytes": peak_memory_bytes(device), "state_bytes": state_bytes(opt),
        "regenerations_per_step": regenerations, "threads": torch.get_num_threads(),
        "generator_s_per_element": generator_cost(device), "memory": memory,
    }))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--optimizers", nargs="+", default=DEFAULT)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="opt-125m")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--steps", type=int, default=3, help="measured steps per optimizer (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured steps first")
    parser.add_argument("--horizon", type=int, default=10, help="AdaMeZO's K")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--memory", action="store_true",
                        help="also measure one step's memory by category from its tensors (llm_demo.memory)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.optimizer = args.worker
        worker(args)
        return

    results = {}
    for name in args.optimizers:
        print(f"{name}: fresh process ...", file=sys.stderr, flush=True)
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", name, "--shape", args.shape,
               "--batch", str(args.batch), "--seq", str(args.seq), "--steps", str(args.steps),
               "--warmup", str(args.warmup), "--horizon", str(args.horizon), "--device", args.device]
        cmd += ["--memory"] if args.memory else []
        out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
        results[name] = json.loads(out.strip().splitlines()[-1])

    base = results.get("mezo")
    first = next(iter(results.values()))
    print(f"\n{args.shape} shape ({first['params'] / 1e6:.1f} M parameters), batch {args.batch} x {args.seq}, "
          f"device {first['device']}, {first['threads']} threads, median of {args.steps} steps after "
          f"{args.warmup} warm-up; AdaMeZO K = {args.horizon}\n")
    print("| optimizer | s/step (median) | time x MeZO | peak memory (MiB) | memory x MeZO | "
          "optimizer state (bytes) | direction regenerations/step |")
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        t_ratio = f"{r['median_step_s'] / base['median_step_s']:.2f}" if base else "-"
        m_ratio = f"{r['peak_memory_bytes'] / base['peak_memory_bytes']:.3f}" if base else "-"
        print(f"| {name} | {r['median_step_s']:.4g} | {t_ratio} | {r['peak_memory_bytes'] / 2**20:.0f} | "
              f"{m_ratio} | {r['state_bytes']:,} | {r['regenerations_per_step']:.0f} |")
    if args.memory:
        print("\nMemory of one step by category, from its tensors (MiB; llm_demo.memory):\n")
        cats = ["weights", "gradients", "optimizer_state", "activations_saved", "forward_working",
                "backward_working", "optimizer_temporaries", "peak_total"]
        print("| optimizer | " + " | ".join(c.replace("_", " ") for c in cats) + " | peak × MeZO |")
        print("|---" * (len(cats) + 2) + "|")
        for name, r in results.items():
            m = r["memory"]
            ratio = f"{m['peak_total'] / base['memory']['peak_total']:.3f}" if base else "-"
            print(f"| {name} | " + " | ".join(f"{m[c] / 2**20:.0f}" for c in cats) + f" | {ratio} |")
    costs = [r["generator_s_per_element"] for r in results.values()]
    print(f"\nkeyed direction generator (manual_seed + randn, 2^20 float32 block): "
          f"{statistics.median(costs) * 1e9:.3g} ns per element (median over the processes)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
