"""Fine-tune a causal LM on a prompt-classification task with any optimizer of the registry.

    python -m llm_demo.finetune --optimizer adamezo --steps 400 --out runs/NAME
        [--model DIR] [--data FILE.jsonl|DIR] [--device auto|cpu|cuda] [--dtype float32|float16|bfloat16]
        [--seed N] [--batch-size 16] [--eval-every 50] [--checkpoint-every 50] [--resume]
        [--<hyperparameter> VALUE ...]          # flags generated from the optimizer registry

The bundled tiny OPT and sentiment task are the defaults. ``train()`` is a generator of records
(plain dicts); the command line appends each one to ``runs/NAME/metrics.jsonl`` as it comes, flushed,
with a progress bar on the terminal. Every record has step, forward_passes, train_loss, wall_time_s,
peak_memory_bytes and optimizer_state_bytes; evaluation points add eval_loss and eval_accuracy, and
the last record adds test_loss and test_accuracy.

Checkpoints (every ``--checkpoint-every`` steps, written atomically) hold what is needed to resume,
whichever is smaller: for a zeroth-order optimizer, the (seed, c) log of every step (16 bytes a step;
the initial weights are the model folder, checked by hash), replayed bit for bit on ``--resume``;
otherwise the trained weights and the optimizer state. A run killed at any point resumes from its
last checkpoint and produces the same records and weights as a run that was never interrupted.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import resource
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from optimizers import OPTIMIZERS, get_entry, make_optimizer, mix_key, state_bytes

from .tasks import BUNDLED_MODEL, BUNDLED_TASK, encode, evaluate, load_model, load_task, loss_fn, resolve_device, subset

# The demo's defaults on the bundled model and task (the CLI's and the app's starting values). AdaMeZO
# runs with the registry's own defaults; the others use the lr that did best in the README's runs
# (MeZO: best dev loss after 1000 steps on the grid 1e-4/3e-4/1e-3/3e-3 for 3 seeds, 3e-3 diverges;
# HiZOO: best dev loss after 500 steps of 3e-4/1e-3/3e-3, seed 0, 3e-3 blows up).
DEMO_DEFAULTS: dict[str, dict[str, Any]] = {
    "mezo": {"lr": 1e-3},
    "adamezo": {},
    "zo-adam": {"lr": 1e-3},
    "hizoo": {"lr": 1e-3},
    "adam": {"lr": 1e-3},
    "adamw": {"lr": 1e-3},
}

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
CONFIG = "config.json"
STATUS = "status.json"


@dataclass
class RunConfig:
    """Everything needed to repeat a run (saved as ``config.json`` in the run folder)."""

    optimizer: str = "adamezo"
    steps: int = 400
    hyper: dict[str, Any] = field(default_factory=dict)
    model: str = str(BUNDLED_MODEL)
    data: str = str(BUNDLED_TASK)
    device: str = "auto"
    dtype: str = "float32"
    seed: int = 0
    batch_size: int = 16
    eval_every: int = 50
    eval_examples: int = 0  # 0: the whole evaluation split
    checkpoint_every: int = 50
    max_length: int = 128
    threads: int = 0  # 0: one thread for models under 20 M parameters on the CPU, else torch's default

    def validate(self) -> RunConfig:
        entry = get_entry(self.optimizer)
        for name, low in (("steps", 1), ("batch_size", 1), ("eval_every", 1), ("checkpoint_every", 1),
                          ("max_length", 2), ("seed", 0), ("eval_examples", 0), ("threads", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"invalid {name}={value!r}; allowed: an integer >= {low}")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ValueError(f"invalid device={self.device!r}; allowed: 'auto', 'cpu', 'cuda'")
        if self.dtype not in ("float32", "float16", "bfloat16"):
            raise ValueError(f"invalid dtype={self.dtype!r}; allowed: 'float32', 'float16', 'bfloat16'")
        unknown = sorted(set(self.hyper) - set(entry.specs))
        if unknown:
            raise ValueError(f"{entry.title} has no hyperparameter {', '.join(map(repr, unknown))}; "
                             f"allowed: {', '.join(sorted(entry.specs))}")
        for name, value in self.hyper.items():
            entry.specs[name].validate(value, entry.title)
        return self

    def optimizer_hyper(self) -> dict[str, Any]:
        """The demo defaults for this optimizer, overridden by the run's own hyperparameters."""
        return {**DEMO_DEFAULTS.get(self.optimizer, {}), **self.hyper}


def peak_memory_bytes(device: torch.device) -> int:
    """CUDA: max allocated bytes; CPU: the process's peak resident set size."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def batch_indices(seed: int, step: int, n: int, batch_size: int) -> torch.Tensor:
    """The training examples of ``step``: a pure function of (seed, step), so a resumed run sees the same."""
    g = torch.Generator().manual_seed(mix_key(seed, 0xBA7C4, step))
    return torch.randperm(n, generator=g)[:batch_size]


def model_fingerprint(model_dir: str) -> str:
    """sha256 over the model folder's weight and config files: the initial weights a ZO log replays from."""
    h = hashlib.sha256()
    for path in sorted(Path(model_dir).iterdir()):
        if path.suffix in (".safetensors", ".bin", ".json") and path.is_file():
            h.update(path.name.encode())
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()


def save_atomic(obj: Any, path: Path) -> None:
    """torch.save to a temporary file, then rename: a kill leaves the old checkpoint or the new one."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


class Trainer:
    """Holds the model, data and optimizer of one run; ``records()`` trains and yields records."""

    def __init__(self, config: RunConfig, run_dir: Path | None = None) -> None:
        self.config = config.validate()
        self.run_dir = run_dir
        self.device = resolve_device(config.device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("device 'cuda' was asked for, but CUDA is not available here; use --device cpu or auto")
        if config.dtype != "float32":
            warnings.warn(f"training in {config.dtype}: the perturb/restore round-off of zeroth-order methods "
                          "grows in half precision, and their loss differences may drown in it", stacklevel=2)
        torch.manual_seed(config.seed)
        self.task = load_task(config.data)
        self.model, self.tokenizer = load_model(config.model, self.device, getattr(torch, config.dtype))
        n_params = sum(p.numel() for p in self.model.parameters())
        if config.threads:
            torch.set_num_threads(config.threads)
        elif self.device.type == "cpu" and n_params < 20_000_000:
            torch.set_num_threads(1)  # small models: a second thread costs more than it gives (LLM-FEASIBILITY)
        self.train_batch = encode(self.task, self.tokenizer, self.task.splits["train"], config.max_length)
        evals = self.task.splits[self.task.eval_split]
        if config.eval_examples:
            evals = evals[:config.eval_examples]
        self.eval_batch = encode(self.task, self.tokenizer, evals, config.max_length)
        self.test_batch = (encode(self.task, self.tokenizer, self.task.splits["test"], config.max_length)
                           if "test" in self.task.splits else None)
        self.entry = get_entry(config.optimizer)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = make_optimizer(config.optimizer, params, seed=config.seed, **config.optimizer_hyper())
        self.step = 0
        self.wall_time = 0.0
        self.log: list[tuple] = []  # the ZO replay log, one entry a step

    # --------------------------------------------------------------------------------- checkpoints
    def weights_bytes(self) -> int:
        return sum(p.numel() * p.element_size() for p in self.model.parameters()) + state_bytes(self.optimizer)

    def checkpoint(self) -> dict[str, Any]:
        """What is needed to resume at ``self.step``: the ZO log or the weights, whichever is smaller."""
        ckpt: dict[str, Any] = {"step": self.step, "wall_time_s": self.wall_time,
                                "config": asdict(self.config)}
        log_bytes = 8 * sum(len(e) for e in self.log)
        if self.entry.zeroth_order and log_bytes <= self.weights_bytes():
            ckpt["mode"] = "replay"
            ckpt["log"] = list(self.log)
            ckpt["model_fingerprint"] = model_fingerprint(self.config.model)
        else:
            ckpt["mode"] = "weights"
            ckpt["model"] = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
            ckpt["optimizer"] = self.optimizer.state_dict()
            ckpt["log"] = list(self.log)
        return ckpt

    def restore(self, ckpt: dict[str, Any]) -> None:
        """Bring a freshly built trainer to the checkpoint's step."""
        if ckpt["mode"] == "replay":
            if ckpt["model_fingerprint"] != model_fingerprint(self.config.model):
                raise ValueError(f"{self.config.model}: the model files changed since the run started, so its "
                                 "log cannot be replayed; start a new run")
            for entry in ckpt["log"]:
                self.optimizer.replay(tuple(entry))
        else:
            self.model.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
        self.log = [tuple(e) for e in ckpt["log"]]
        self.step = ckpt["step"]
        self.wall_time = ckpt["wall_time_s"]

    # --------------------------------------------------------------------------------- training
    def _record(self, train_loss: float) -> dict[str, Any]:
        return {"step": self.step, "forward_passes": self.optimizer.forward_passes,
                "train_loss": train_loss, "wall_time_s": round(self.wall_time, 4),
                "peak_memory_bytes": peak_memory_bytes(self.device),
                "optimizer_state_bytes": state_bytes(self.optimizer)}

    def _batch(self, step: int):
        idx = batch_indices(self.config.seed, step, len(self.task.splits["train"]), self.config.batch_size)
        return subset(self.train_batch, idx)

    def records(self, should_stop: Callable[[], bool] = lambda: False) -> Iterator[dict[str, Any]]:
        """Train from ``self.step`` to ``config.steps``, yielding one record a step.

        Step 0 (a fresh run) is the zero-shot evaluation; its train_loss is on the first batch.
        ``should_stop()`` is asked before every step; once true, training ends after the current step.
        """
        cfg = self.config
        if self.step == 0:
            with torch.no_grad():
                first = float(loss_fn(self.model, self._batch(0)))
            yield self._record(first) | self._evaluate()
        while self.step < cfg.steps and not should_stop():
            batch = self._batch(self.step)
            start = time.perf_counter()
            loss = self.optimizer.step(lambda: loss_fn(self.model, batch))
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.wall_time += time.perf_counter() - start
            self.step += 1
            if self.entry.zeroth_order:
                self.log.append(self.optimizer.last_log_entry)
            record = self._record(float(loss))
            if self.step % cfg.eval_every == 0 or self.step == cfg.steps:
                record |= self._evaluate()
            if self.step == cfg.steps and self.test_batch is not None:
                test_loss, test_acc = evaluate(self.model, self.test_batch)
                record |= {"test_loss": test_loss, "test_accuracy": test_acc}
            if not math.isfinite(record["train_loss"]):
                raise ValueError(f"step {self.step}: the training loss is not finite; lower the learning rate")
            yield record
            if self.run_dir is not None and (self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps):
                save_atomic(self.checkpoint(), self.run_dir / CHECKPOINT)

    def _evaluate(self) -> dict[str, float]:
        eval_loss, eval_acc = evaluate(self.model, self.eval_batch)
        return {"eval_loss": eval_loss, "eval_accuracy": eval_acc}


def train(config: RunConfig) -> Iterator[dict[str, Any]]:
    """Train with ``config`` (no run folder, no checkpoints) and yield the records."""
    yield from Trainer(config).records()


# ------------------------------------------------------------------------------------- run folders
def write_status(run_dir: Path, status: str, **extra: Any) -> None:
    tmp = run_dir / (STATUS + ".tmp")
    tmp.write_text(json.dumps({"status": status, "time": time.time(), **extra}))
    os.replace(tmp, run_dir / STATUS)


def truncate_metrics(path: Path, last_step: int) -> None:
    """Keep the records up to ``last_step`` (and drop a torn last line): they will be produced again."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            break
        if record["step"] > last_step:
            break
        kept.append(line + "\n")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(kept))
    os.replace(tmp, path)


def run(config: RunConfig, run_dir: Path, resume: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train into ``run_dir`` (config.json, metrics.jsonl, checkpoint.pt, status.json); returns the last record."""
    run_dir.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()

    def on_term(signum, frame):  # the app's stop button: finish the step, checkpoint, stop
        stop.set()

    trainer = None
    previous = signal.signal(signal.SIGTERM, on_term)  # before the model loads: a stop then is a stop too
    (run_dir / "pid").write_text(str(os.getpid()))
    write_status(run_dir, "running", pid=os.getpid())
    try:
        trainer = Trainer(config, run_dir)
    except BaseException as e:
        signal.signal(signal.SIGTERM, previous)
        write_status(run_dir, "failed", step=0, error=f"{type(e).__name__}: {e}")
        raise
    metrics = run_dir / METRICS
    if resume and (run_dir / CHECKPOINT).exists():
        ckpt = torch.load(run_dir / CHECKPOINT, weights_only=False)
        trainer.restore(ckpt)
        truncate_metrics(metrics, trainer.step)
    else:
        metrics.write_text("")
    (run_dir / CONFIG).write_text(json.dumps(asdict(config), indent=2))

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=config.steps, initial=trainer.step, desc=f"{config.optimizer}", unit="step",
                   file=sys.stderr, dynamic_ncols=True)
    last: dict[str, Any] = {}
    try:
        with open(metrics, "a") as out:
            for record in trainer.records(stop.is_set):
                out.write(json.dumps(record) + "\n")
                out.flush()
                last = record
                if bar is not None:
                    bar.n = record["step"]
                    shown = {"loss": f"{record['train_loss']:.4f}"}
                    if "eval_accuracy" in record:
                        shown["dev_acc"] = f"{record['eval_accuracy']:.3f}"
                    bar.set_postfix(shown, refresh=True)
        if stop.is_set() and trainer.step < config.steps:
            save_atomic(trainer.checkpoint(), run_dir / CHECKPOINT)
            write_status(run_dir, "stopped", step=trainer.step)
        else:
            write_status(run_dir, "finished", step=trainer.step)
    except BaseException as e:
        write_status(run_dir, "failed", step=trainer.step, error=f"{type(e).__name__}: {e}")
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
        if bar is not None:
            bar.close()
    return last


# ------------------------------------------------------------------------------------- command line
def _hyper_flags(parser: argparse.ArgumentParser) -> dict[str, str]:
    """One flag per hyperparameter name in the registry; returns dest -> hyperparameter name."""
    group = parser.add_argument_group("optimizer hyperparameters (from the registry; each applies to the "
                                      "optimizers that have it)")
    seen: dict[str, str] = {}
    for entry in OPTIMIZERS.values():
        for name, spec in entry.specs.items():
            if name in seen or name == "seed":
                continue
            users = [e.name for e in OPTIMIZERS.values() if name in e.specs]
            dest = "hyper_" + name
            group.add_argument("--" + name.replace("_", "-"), dest=dest, default=None, metavar=spec.kind.upper(),
                               help=f"{spec.help} Allowed: {spec.allowed()}. For: {', '.join(users)}.")
            seen[name] = dest
    return seen


def _parse_hyper(name: str, text: str) -> Any:
    spec = next(e.specs[name] for e in OPTIMIZERS.values() if name in e.specs)
    if spec.kind == "choice":
        return text
    if spec.optional and text.lower() == "none":
        return None
    try:
        return int(text) if spec.kind == "int" else float(text)
    except ValueError:
        raise ValueError(f"--{name.replace('_', '-')}: {text!r} is not {spec.allowed()}") from None


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, str]]:
    d = RunConfig()
    p = argparse.ArgumentParser(prog="python -m llm_demo.finetune", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--optimizer", default=d.optimizer, choices=list(OPTIMIZERS))
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--out", required=True, help="the run folder, e.g. runs/NAME")
    p.add_argument("--model", default=d.model, help="a local Hugging Face causal LM folder")
    p.add_argument("--data", default=d.data, help="a task folder (train/dev/test.jsonl) or one JSONL file")
    p.add_argument("--device", default=d.device, help="auto (CUDA when present), cpu or cuda")
    p.add_argument("--dtype", default=d.dtype, choices=["float32", "float16", "bfloat16"])
    p.add_argument("--seed", type=int, default=d.seed, help="seeds the batches and the optimizer's directions")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--eval-every", type=int, default=d.eval_every)
    p.add_argument("--eval-examples", type=int, default=d.eval_examples, help="0: the whole dev split")
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every)
    p.add_argument("--max-length", type=int, default=d.max_length)
    p.add_argument("--threads", type=int, default=d.threads, help="0: automatic")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last checkpoint, with its saved configuration")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p, _hyper_flags(p)


def main(argv: list[str] | None = None) -> int:
    parser, flags = build_parser()
    args = parser.parse_args(argv)
    run_dir = Path(args.out)
    try:
        if args.resume:
            if not (run_dir / CONFIG).exists():
                raise ValueError(f"{run_dir}: no run to resume here (no {CONFIG})")
            config = RunConfig(**json.loads((run_dir / CONFIG).read_text()))
        else:
            hyper = {name: _parse_hyper(name, getattr(args, dest)) for name, dest in flags.items()
                     if getattr(args, dest) is not None}
            values = {f.name: getattr(args, f.name) for f in fields(RunConfig) if f.name != "hyper"}
            config = RunConfig(**values, hyper=hyper).validate()
        last = run(config, run_dir, resume=args.resume, progress=not args.quiet)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    summary = {k: last[k] for k in ("step", "forward_passes", "train_loss", "eval_accuracy", "test_accuracy")
               if k in last}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
