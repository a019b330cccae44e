"""Fine-tune a causal LM on a prompt-classification task with any optimizer of the registry.

    python -m llm_demo.finetune --optimizer adamezo --steps 400 --out runs/NAME
        [--model DIR] [--data FILE.jsonl|DIR] [--device auto|cpu|cuda] [--dtype float32|float16|bfloat16]
        [--seed N] [--batch-size 16] [--eval-every 50] [--checkpoint-every 50] [--resume | --overwrite]
        [--lr-scheduler-type constant|constant_with_warmup|linear|cosine] [--warmup-steps N]
        [--peft none|lora [--lora-r 8] [--lora-alpha 16] [--lora-target-modules q_proj,v_proj]]
        [--<hyperparameter> VALUE ...]          # flags generated from the optimizer registry

The bundled tiny OPT and sentiment task are the defaults. ``train()`` is a generator of records
(plain dicts); the command line appends each one to ``runs/NAME/metrics.jsonl`` as it comes, flushed,
with a progress bar on the terminal. Every record has step, forward_passes, train_loss, wall_time_s,
peak_memory_bytes (the process's peak resident set; CUDA: peak allocated bytes) and
optimizer_state_bytes; evaluation points add eval_loss and eval_accuracy, and the last record adds
test_loss and test_accuracy. From step 2 on, every record carries ``memory``: the bytes by category
(weights, gradients, optimizer state, activations saved for backward, working memory, the optimizer's
temporaries, the peak of all of them) that ``llm_demo.memory`` measured from the tensors of the last
measured step (step 2 and every evaluation step; ``measured_step`` says which).

Checkpoints (every ``--checkpoint-every`` steps, written atomically) hold what is needed to resume,
whichever is smaller: for a zeroth-order optimizer, the (seed, c) log of every step (16 bytes a step;
the initial weights are the model folder, checked by hash), replayed bit for bit on ``--resume``;
otherwise the trained weights and the optimizer state (with ``--peft lora``: the adapter, ``llm_demo.adapters``,
and the optimizer state). A run killed at any point resumes from its
last checkpoint and produces the same records and weights as a run that was never interrupted.

A run folder belongs to one run: a new run into a folder that holds files is refused unless
``--overwrite`` is given (which deletes the run files first); the process holds a lock on the folder
(``lock``, ``flock``) for its lifetime, so a second process is refused; ``--resume`` loads the
checkpoint with ``torch.load(weights_only=True)`` (no code runs from it), checks its structure and that
it was written for the run's configuration (a hash of ``config.json``). Ctrl-C and SIGTERM stop after
the current step with a checkpoint. Every refusal is one line on stderr: exit code 2 for a usage error
(a bad setting, file or folder), 1 for a failure while running, 128 + the signal number after a stop.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import math
import os
import pickle
import re
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

from optimizers import OPTIMIZERS, get_entry, make_optimizer, mix_key, state_bytes, weight_decay_groups

from . import adapters, distributed
from .memory import cuda_peak_allocated, measure_step
from .tasks import BUNDLED_MODEL, BUNDLED_TASK, encode, evaluate, load_model, load_task, loss_fn, resolve_device, subset

# The demo's defaults on the bundled model and task (the CLI's and the app's starting values): each
# registry entry's ``llm_hyper`` (how they were chosen is in the README's LLM demo section).
DEMO_DEFAULTS: dict[str, dict[str, Any]] = {name: dict(entry.llm_hyper) for name, entry in OPTIMIZERS.items()}

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
CONFIG = "config.json"
STATUS = "status.json"
PID = "pid"
LOCK = "lock"  # flock-ed by the process that runs in the folder, for its lifetime; holds its pid
# What a run folder may hold (runs.py adds started, log.txt, owner and resumed for the runs it starts);
# --overwrite deletes these (and their .tmp files) and nothing else.
RUN_FILES = (CONFIG, METRICS, CHECKPOINT, STATUS, PID, "log.txt", "started", "owner", "resumed")
SEED_MAX = 2**63 - 1  # the optimizers' seed range (torch generators take 64-bit seeds)
#: Learning-rate schedules (Hugging Face's names, built by ``transformers.get_scheduler``).
LR_SCHEDULES = ("constant", "constant_with_warmup", "linear", "cosine")
_DEVICE = re.compile(r"^(auto|cpu|cuda|cuda:[0-9]{1,4})$")


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
    lr_scheduler_type: str = "constant"  # Hugging Face's names: constant, constant_with_warmup, linear, cosine
    warmup_steps: int = 0
    processes: int = 1  # data parallel: the number of torchrun processes (llm_demo.distributed)
    # Parameter-efficient fine-tuning (llm_demo.adapters, through peft): "none" (all weights) or "lora"
    peft: str = "none"
    lora_r: int = adapters.LORA_DEFAULTS["lora_r"]
    lora_alpha: int = adapters.LORA_DEFAULTS["lora_alpha"]
    lora_target_modules: str = adapters.LORA_DEFAULTS["lora_target_modules"]

    def validate(self) -> RunConfig:
        for name in ("optimizer", "model", "data", "device", "dtype"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"invalid {name}={getattr(self, name)!r:.100}; allowed: a string")
        entry = get_entry(self.optimizer)
        for name, low, high in (("steps", 1, None), ("batch_size", 1, None), ("eval_every", 1, None),
                                ("checkpoint_every", 1, None), ("max_length", 2, None), ("seed", 0, SEED_MAX),
                                ("eval_examples", 0, None), ("threads", 0, 1024),
                                ("processes", 1, 1024)):
            value = getattr(self, name)
            if (isinstance(value, bool) or not isinstance(value, int) or value < low
                    or (high is not None and value > high)):
                allowed = f"an integer from {low} to {high}" if high is not None else f"an integer >= {low}"
                raise ValueError(f"invalid {name}={value!r:.100}; allowed: {allowed}")
        if not _DEVICE.match(self.device):
            raise ValueError(f"invalid device={self.device!r:.100}; allowed: 'auto', 'cpu', 'cuda' or 'cuda:N' "
                             "(N the index of a CUDA device)")
        if self.lr_scheduler_type not in LR_SCHEDULES:
            raise ValueError(f"invalid lr_scheduler_type={self.lr_scheduler_type!r:.100}; allowed: "
                             f"{', '.join(map(repr, LR_SCHEDULES))}")
        if (isinstance(self.warmup_steps, bool) or not isinstance(self.warmup_steps, int)
                or not 0 <= self.warmup_steps <= self.steps):
            raise ValueError(f"invalid warmup_steps={self.warmup_steps!r:.100}; allowed: an integer from 0 to "
                             f"the steps ({self.steps})")
        if self.warmup_steps and self.lr_scheduler_type == "constant":
            raise ValueError(f"warmup_steps={self.warmup_steps} needs a schedule with a warm-up; the 'constant' "
                             "schedule has none: use 'constant_with_warmup' (or 'linear', 'cosine')")
        if self.dtype not in ("float32", "float16", "bfloat16"):
            raise ValueError(f"invalid dtype={self.dtype!r:.100}; allowed: 'float32', 'float16', 'bfloat16'")
        if not isinstance(self.hyper, dict) or not all(isinstance(k, str) for k in self.hyper):
            raise ValueError(f"invalid hyper={self.hyper!r:.100}; allowed: an object of hyperparameter values")
        unknown = sorted(set(self.hyper) - set(entry.specs))
        if unknown:
            raise ValueError(f"{entry.title} has no hyperparameter {', '.join(map(repr, unknown))}; "
                             f"allowed: {', '.join(sorted(entry.specs))}")
        for name, value in self.hyper.items():
            entry.specs[name].validate(value, entry.title)
        self.lora()
        return self

    def lora(self) -> adapters.LoRA | None:
        """The run's LoRA settings (None: full fine-tuning); ``ValueError`` for a bad or stray one."""
        if self.peft not in adapters.PEFT_METHODS:
            raise ValueError(f"invalid peft={self.peft!r:.100}; allowed: {', '.join(map(repr, adapters.PEFT_METHODS))}")
        if self.peft == "lora":
            return adapters.LoRA.from_settings(self.lora_r, self.lora_alpha, self.lora_target_modules)
        stray = [k for k, v in adapters.LORA_DEFAULTS.items() if getattr(self, k) != v]
        if stray:
            raise ValueError(f"{', '.join('--' + k.replace('_', '-') for k in stray)} set without --peft lora; "
                             "give --peft lora to fine-tune LoRA adapters, or leave the LoRA settings out")
        return None

    @classmethod
    def from_json(cls, data: Any, where: str) -> RunConfig:
        """A validated config from a parsed ``config.json``; ``ValueError`` naming ``where`` otherwise."""
        if not isinstance(data, dict):
            raise ValueError(f"{where}: expected a JSON object of run settings, got {type(data).__name__}")
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"{where}: unknown setting {', '.join(repr(k)[:60] for k in unknown[:5])}; "
                             f"allowed: {', '.join(known)}")
        try:
            return cls(**data).validate()
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None

    def optimizer_hyper(self) -> dict[str, Any]:
        """The demo defaults for this optimizer, overridden by the run's own hyperparameters."""
        return {**DEMO_DEFAULTS.get(self.optimizer, {}), **self.hyper}


def peak_memory_bytes(device: torch.device) -> int:
    """CUDA: max allocated bytes; CPU: the process's peak resident set size."""
    if device.type == "cuda":
        return cuda_peak_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def measures_memory(step: int, eval_every: int) -> bool:
    """Whether step ``step`` (1-based) is measured by ``llm_demo.memory``: the second step (the first
    with the optimizer's state and buffers in place) and every evaluation step. A pure function of the
    step, so a resumed run measures the same steps."""
    return step == 2 or (step > 2 and step % eval_every == 0)


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


#: Settings added after runs were saved, with the value those runs had: at that value they are left out
#: of the hash, so the checkpoints of older runs still belong to their run.
_LATER_SETTINGS = {"lr_scheduler_type": "constant", "warmup_steps": 0, "processes": 1, "peft": "none",
                   **adapters.LORA_DEFAULTS}


def config_hash(config: RunConfig | dict[str, Any]) -> str:
    """sha256 of the run's settings (canonical JSON): a checkpoint records the run it belongs to."""
    values = asdict(config) if isinstance(config, RunConfig) else config
    values = {k: v for k, v in values.items() if not (k in _LATER_SETTINGS and v == _LATER_SETTINGS[k])}
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0][:200]}" if text else type(e).__name__


def load_checkpoint(path: Path, config: RunConfig) -> dict[str, Any]:
    """Load and check ``checkpoint.pt`` for the run ``config``; never runs code from the file.

    ``torch.load(weights_only=True)`` unpickles tensors and plain containers only. The structure is
    checked (mode, step within the run, a log entry per zeroth-order step, weights as tensors) and the
    checkpoint must have been written for ``config`` (its ``config_hash``). ``ValueError`` otherwise.
    """
    again = "start the run again with --overwrite, or choose another --out"
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ValueError(f"{path}: refused: the checkpoint holds objects other than tensors and plain values, "
                         f"and loading it could run code; {again}") from None
    except Exception as e:  # noqa: BLE001 - truncated zip, not a torch file, a folder, ...
        raise ValueError(f"{path}: not a readable checkpoint ({_first_line(e)}); {again}") from None

    def bad(why: str) -> ValueError:
        return ValueError(f"{path}: malformed checkpoint ({why}); {again}")

    if not isinstance(ckpt, dict):
        raise bad(f"a {type(ckpt).__name__}, not a dictionary")
    saved = ckpt.get("config_hash")
    if saved is None and not isinstance(ckpt.get("config"), dict):
        raise bad("it does not say which run it belongs to (no config_hash)")
    if saved is None:  # written before config_hash existed
        saved = config_hash(ckpt["config"])
    if saved != config_hash(config):
        old = ckpt.get("config") if isinstance(ckpt.get("config"), dict) else {}
        new = asdict(config)
        differ = [k for k in new if old.get(k, None) != new[k]] if old else []
        detail = f" (its settings differ in: {', '.join(differ)})" if differ else ""
        raise ValueError(f"{path}: this checkpoint belongs to another run{detail}, so it cannot be resumed "
                         f"with this folder's {CONFIG}; {again}")
    mode, step, log = ckpt.get("mode"), ckpt.get("step"), ckpt.get("log")
    if mode not in ("replay", "weights"):
        raise bad(f"mode {mode!r:.40}; allowed: 'replay' or 'weights'")
    if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step <= config.steps:
        raise bad(f"step {step!r:.40}; allowed: an integer from 0 to {config.steps}")
    wall = ckpt.get("wall_time_s")
    if isinstance(wall, bool) or not isinstance(wall, (int, float)) or not math.isfinite(wall) or wall < 0:
        raise bad(f"wall_time_s {wall!r:.40}; allowed: a number >= 0")
    if not isinstance(log, list) or not all(
            isinstance(e, (list, tuple)) and len(e) >= 2 and isinstance(e[0], int) and not isinstance(e[0], bool)
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in e[1:]) for e in log):
        raise bad("the log must be a list of (seed, c, ...) numbers")
    if get_entry(config.optimizer).zeroth_order and len(log) != step:
        raise bad(f"{len(log)} log entries for {step} steps")
    memory = ckpt.get("memory")
    if memory is not None and not (isinstance(memory, dict) and all(
            isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) for k, v in memory.items())):
        raise bad("the memory breakdown must be a dictionary of integers")
    if mode == "replay" and not isinstance(ckpt.get("model_fingerprint"), str):
        raise bad("no model fingerprint")
    if mode == "weights" and not (isinstance(ckpt.get("model"), dict) and isinstance(ckpt.get("optimizer"), dict)
                                  and all(isinstance(v, torch.Tensor) for v in ckpt["model"].values())):
        raise bad("the weights must be a dictionary of tensors, with the optimizer's state")
    return ckpt


def check_device(device: str) -> torch.device:
    """The torch device for a validated ``device`` setting; ``ValueError`` if this machine does not have it."""
    resolved = resolve_device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for, but CUDA is not available here; use --device cpu or auto")
    if resolved.type == "cuda" and (resolved.index or 0) >= torch.cuda.device_count():
        raise ValueError(f"device {device!r}: there is no such CUDA device here; allowed: cuda:0 to "
                         f"cuda:{torch.cuda.device_count() - 1}")
    return resolved


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
        self.device = check_device(config.device)
        if distributed.current() is not None:  # under torchrun: this rank's device (cuda:LOCAL_RANK or the CPU)
            self.device = distributed.current().device
        if config.dtype != "float32":
            warnings.warn(f"training in {config.dtype}: the perturb/restore round-off of zeroth-order methods "
                          "grows in half precision, and their loss differences may drown in it", stacklevel=2)
        torch.manual_seed(config.seed)
        self.task = load_task(config.data)
        self.model, self.tokenizer = load_model(config.model, self.device, getattr(torch, config.dtype))
        n_params = sum(p.numel() for p in self.model.parameters())
        lora = config.lora()  # LoRA: self.model gets peft's adapters in place, only they are trainable
        self.peft_model = adapters.apply_lora(self.model, lora) if lora is not None else None
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
        hyper = config.optimizer_hyper()
        weight_decay = hyper.get("weight_decay", self.entry.specs["weight_decay"].default)
        if weight_decay:  # as the published MeZO/AdaMeZO and Hugging Face: no decay on biases and layer norms
            params = weight_decay_groups(self.model.named_parameters(), weight_decay)
        else:  # one group, in the model's order (the block layout older run logs replay on)
            params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = make_optimizer(config.optimizer, params, seed=config.seed, **hyper,
                                        **distributed.optimizer_options(self.entry.zeroth_order))
        self.train_model = distributed.wrap_model(self.model, self.entry.zeroth_order)  # DDP for Adam
        self.scheduler = lr_schedule(self.optimizer, config)
        self.step = 0
        self.wall_time = 0.0
        self.log: list[tuple] = []  # the ZO replay log, one entry a step
        self.memory: dict[str, int] | None = None  # the last measured step's memory by category

    # --------------------------------------------------------------------------------- checkpoints
    def weights_bytes(self) -> int:
        return sum(p.numel() * p.element_size() for p in self.model.parameters()) + state_bytes(self.optimizer)

    def checkpoint(self) -> dict[str, Any]:
        """What is needed to resume at ``self.step``: the ZO log or the weights, whichever is smaller."""
        ckpt: dict[str, Any] = {"step": self.step, "wall_time_s": self.wall_time,
                                "config": asdict(self.config), "config_hash": config_hash(self.config)}
        if self.memory is not None:  # a resumed run's records carry it on, as the uninterrupted run's do
            ckpt["memory"] = dict(self.memory)
        log_bytes = 8 * sum(len(e) for e in self.log)
        if self.entry.zeroth_order and log_bytes <= self.weights_bytes() and self.peft_model is None:
            ckpt["mode"] = "replay"
            ckpt["log"] = list(self.log)
            ckpt["model_fingerprint"] = model_fingerprint(self.config.model)
        else:  # with LoRA: the adapter alone (the frozen base weights are the model folder)
            ckpt["mode"] = "weights"
            ckpt["model"] = (adapters.adapter_state(self.peft_model) if self.peft_model is not None else
                             {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()})
            if self.peft_model is not None:  # the frozen base weights the adapter was trained on
                ckpt["model_fingerprint"] = model_fingerprint(self.config.model)
            ckpt["optimizer"] = self.optimizer.state_dict()
            ckpt["log"] = list(self.log)
        return ckpt

    def restore(self, ckpt: dict[str, Any]) -> None:
        """Bring a freshly built trainer to the checkpoint's step (checked by ``load_checkpoint``)."""
        if ckpt["mode"] == "replay" or (self.peft_model is not None and "model_fingerprint" in ckpt):
            if ckpt["model_fingerprint"] != model_fingerprint(self.config.model):
                what = "its adapter was trained on other weights" if self.peft_model else "its log cannot be replayed"
                raise ValueError(f"{self.config.model}: the model files changed since the run started, so "
                                 f"{what}; start a new run")
        try:
            with warnings.catch_warnings():  # the scheduler steps without optimizer.step(): torch would warn
                warnings.simplefilter("ignore", UserWarning)
                if ckpt["mode"] == "replay":
                    for entry in ckpt["log"]:
                        self.optimizer.replay(tuple(entry))
                        self.scheduler.step()
                else:
                    if self.peft_model is not None:
                        adapters.load_adapter_state(self.peft_model, ckpt["model"])
                    else:
                        self.model.load_state_dict(ckpt["model"])
                    self.optimizer.load_state_dict(ckpt["optimizer"])
                    for _ in range(ckpt["step"]):  # each lr is the base lr times the schedule at that step
                        self.scheduler.step()
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as e:
            raise ValueError(f"the checkpoint does not fit this model and optimizer ({_first_line(e)}); "
                             "start the run again with --overwrite") from None
        self.log = [tuple(e) for e in ckpt["log"]]
        self.step = ckpt["step"]
        self.wall_time = ckpt["wall_time_s"]
        self.memory = dict(ckpt["memory"]) if ckpt.get("memory") is not None else None

    # --------------------------------------------------------------------------------- training
    def _record(self, train_loss: float) -> dict[str, Any]:
        record = {"step": self.step, "forward_passes": self.optimizer.forward_passes,
                  "train_loss": train_loss, "wall_time_s": round(self.wall_time, 4),
                  "peak_memory_bytes": peak_memory_bytes(self.device),
                  "optimizer_state_bytes": state_bytes(self.optimizer)}
        if self.memory is not None:
            record["memory"] = dict(self.memory)
        return record

    def _batch(self, step: int):
        idx = batch_indices(self.config.seed, step, len(self.task.splits["train"]), self.config.batch_size)
        return subset(self.train_batch, idx)

    def records(self, should_stop: Callable[[], bool] = lambda: False) -> Iterator[dict[str, Any]]:
        """Train from ``self.step`` to ``config.steps``, yielding one record a step.

        Step 0 (a fresh run) is the zero-shot evaluation; its train_loss is on the first batch.
        ``should_stop()`` is asked before every step; once true, training ends after the current step.
        """
        cfg = self.config
        if self.step == 0 and distributed.is_main():
            with torch.no_grad():
                first = float(loss_fn(self.model, self._batch(0)))
            yield self._record(first) | self._evaluate()
        while self.step < cfg.steps and not should_stop():
            batch = distributed.local_slice(self._batch(self.step))  # data parallel: this rank's slice
            start = time.perf_counter()
            if measures_memory(self.step + 1, cfg.eval_every):
                loss, memory = measure_step(self.model, self.optimizer, lambda: loss_fn(self.train_model, batch),
                                            state_bytes)
                self.memory = memory | {"measured_step": self.step + 1, "batch_size": int(batch["input_ids"].shape[0]),
                                        "batch_tokens": int(batch["input_ids"].shape[1])}
            else:
                loss = self.optimizer.step(lambda: loss_fn(self.train_model, batch))
            loss = distributed.mean_loss(loss, self.entry.zeroth_order)
            self.scheduler.step()
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.wall_time += time.perf_counter() - start
            self.step += 1
            if self.entry.zeroth_order:
                self.log.append(self.optimizer.last_log_entry)
            record = self._record(float(loss))
            if self.step % cfg.eval_every == 0 or self.step == cfg.steps:
                record |= self._evaluate()
            if self.step == cfg.steps and self.test_batch is not None and distributed.is_main():
                test_loss, test_acc = evaluate(self.model, self.test_batch)
                record |= {"test_loss": test_loss, "test_accuracy": test_acc}
            if not math.isfinite(record["train_loss"]):
                raise ValueError(f"step {self.step}: the training loss is not finite; lower the learning rate")
            yield record
            if self.run_dir is not None and (self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps):
                save_atomic(self.checkpoint(), self.run_dir / CHECKPOINT)

    def _evaluate(self) -> dict[str, float]:
        if not distributed.is_main():  # data parallel: rank 0 evaluates, exactly as one process does
            return {}
        eval_loss, eval_acc = evaluate(self.model, self.eval_batch)
        return {"eval_loss": eval_loss, "eval_accuracy": eval_acc}


def lr_schedule(optimizer: torch.optim.Optimizer, config: RunConfig) -> torch.optim.lr_scheduler.LRScheduler:
    """The run's learning-rate schedule over ``config.steps`` (``transformers.get_scheduler``; stepped once
    after every optimizer step, and again for every step a resume replays)."""
    from transformers import get_scheduler

    return get_scheduler(config.lr_scheduler_type, optimizer, num_warmup_steps=config.warmup_steps,
                         num_training_steps=config.steps)


def train(config: RunConfig) -> Iterator[dict[str, Any]]:
    """Train with ``config`` (no run folder, no checkpoints) and yield the records."""
    yield from Trainer(config).records()


# ------------------------------------------------------------------------------------- run folders
def write_status(run_dir: Path, status: str, **extra: Any) -> None:
    tmp = run_dir / (STATUS + ".tmp")
    tmp.write_text(json.dumps({"status": status, "time": time.time(), **extra}))
    os.replace(tmp, run_dir / STATUS)


def _try_status(run_dir: Path, status: str, **extra: Any) -> None:
    """write_status on a failure path: a full disk must not hide the error being reported."""
    try:
        write_status(run_dir, status, **extra)
    except OSError:
        pass


@dataclass
class MetricsRepair:
    """What ``truncate_metrics`` kept and dropped."""

    kept: int
    bad_lines: list[int]  # line numbers (1-based) of complete lines that were not a readable record
    missing_steps: list[int]  # steps up to the checkpoint with no record left


def _record_step(line: bytes) -> int | None:
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return None
    step = record.get("step") if isinstance(record, dict) else None
    return step if isinstance(step, int) and not isinstance(step, bool) and step >= 0 else None


def truncate_metrics(path: Path, last_step: int) -> MetricsRepair:
    """Keep every readable record up to ``last_step``: the records after it will be produced again.

    A line that is not a readable record (a corrupt line, a torn last line after a kill, a record out
    of step order) is dropped and the others are kept; the caller reports the dropped lines and the
    steps left without a record. Reads line by line (bounded lines), writes a new file atomically.
    """
    if not path.exists():
        return MetricsRepair(0, [], list(range(last_step + 1)))
    tmp = path.with_name(path.name + ".tmp")
    steps: list[int] = []
    bad: list[int] = []
    with open(path, "rb") as f, open(tmp, "wb") as out:
        number = 0
        while line := f.readline(1 << 20):
            number += 1
            complete = line.endswith(b"\n")
            if not complete and (more := f.readline(1 << 20)):  # over 1 MiB: no record of ours; skip it
                while more and not more.endswith(b"\n"):
                    more = f.readline(1 << 20)
                line, complete = b"", bool(more)
            step = _record_step(line) if line else None
            if step is not None and step > last_step:
                break
            if step is None or (steps and step <= steps[-1]):
                if complete:  # a torn last line is the normal trace of a kill, not worth a word
                    bad.append(number)
                continue
            out.write(line if complete else line + b"\n")
            steps.append(step)
    os.replace(tmp, path)
    missing = sorted(set(range(last_step + 1)) - set(steps))
    return MetricsRepair(len(steps), bad, missing)


def _ranges(numbers: list[int], limit: int = 8) -> str:
    shown = ", ".join(map(str, numbers[:limit]))
    return shown + (f" and {len(numbers) - limit} more" if len(numbers) > limit else "")


def _claim_run_dir(run_dir: Path, resume: bool, overwrite: bool) -> int:
    """Create ``run_dir`` if needed and lock it for this process; returns the lock's file descriptor.

    The lock (``flock`` on ``run_dir/lock``) is released by the kernel when the process ends, however it
    ends. A new run (not ``resume``) needs an empty folder, or ``overwrite``, which deletes the run files.
    """
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"--out {run_dir}: this is a file; --out must be a folder (it is created if missing)")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(run_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise ValueError(f"--out {run_dir}: cannot create the run folder or write in it "
                         f"({e.strerror or type(e).__name__}); choose a folder you can write to") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        os.close(fd)
        raise ValueError(f"--out {run_dir}: another process runs in this folder (pid {holder or 'unknown'}); "
                         "wait for it to end or stop it, or choose another --out") from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        if not resume:
            present = sorted(p.name for p in run_dir.iterdir() if p.name != LOCK)
            if present and not overwrite:
                ours = [n for n in present if n.removesuffix(".tmp") in RUN_FILES]
                what = "a run" if ours else "other files"
                raise ValueError(f"--out {run_dir}: this folder already holds {what} ({', '.join(present[:4])}"
                                 f"{', ...' if len(present) > 4 else ''}); pass --resume to continue it, --overwrite "
                                 "to replace it, or choose another --out")
            if overwrite:
                for name in RUN_FILES:
                    for victim in (run_dir / name, run_dir / (name + ".tmp")):
                        victim.unlink(missing_ok=True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def run(config: RunConfig, run_dir: Path, resume: bool = False, progress: bool = True,
        overwrite: bool = False) -> dict[str, Any]:
    """Train into ``run_dir`` (config.json, metrics.jsonl, checkpoint.pt, status.json); returns the last record."""
    return _run(config, run_dir, resume, progress, overwrite)[0]


def _run(config: RunConfig, run_dir: Path, resume: bool, progress: bool,
         overwrite: bool) -> tuple[dict[str, Any], int | None, int]:
    """``run``, the number of the signal that stopped it early (SIGTERM, SIGINT) if one did, and the step."""
    config.validate()
    if distributed.setup(config.processes, config.batch_size, check_device(config.device)) and not distributed.is_main():
        return distributed.follow(config, run_dir, resume)  # data parallel: ranks > 0 write nothing
    lock = _claim_run_dir(run_dir, resume, overwrite)
    stop = threading.Event()
    stopped_by: list[int] = []

    def on_signal(signum, frame):  # the app's stop button, or Ctrl-C: finish the step, checkpoint, stop
        if signum == signal.SIGINT and stop.is_set():
            raise KeyboardInterrupt  # a second Ctrl-C: quit at once
        stopped_by.append(signum)
        stop.set()
        if signum == signal.SIGINT and progress:  # on a terminal: say that it was heard
            print("\nstopping after this step with a checkpoint (Ctrl-C again to quit at once)", file=sys.stderr)

    handled = (signal.SIGTERM, signal.SIGINT)
    previous = {}
    if threading.current_thread() is threading.main_thread():  # before the model loads: a stop then is a stop
        previous = {s: signal.signal(s, on_signal) for s in handled}
    trainer = None
    bar = None
    try:
        # A new run writes nothing into the folder until its model and data have loaded, so a typo in a
        # path leaves the folder as it was (the same command, corrected, then runs into it).
        if resume:
            (run_dir / PID).write_text(str(os.getpid()))
            write_status(run_dir, "running", pid=os.getpid())
        checkpoint = run_dir / CHECKPOINT
        resuming = resume and checkpoint.exists()
        if not progress:  # transformers draws its own bars while it loads the weights
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
        try:
            ckpt = load_checkpoint(checkpoint, config) if resuming else None
            trainer = Trainer(config, run_dir)
            if ckpt is not None:
                trainer.restore(ckpt)
                del ckpt
        except BaseException as e:
            if resume:
                _try_status(run_dir, "failed", step=0, error=_first_line(e))
            raise
        if not resume:
            (run_dir / PID).write_text(str(os.getpid()))
            write_status(run_dir, "running", pid=os.getpid())
        if not resuming:
            (run_dir / CONFIG).write_text(json.dumps(asdict(config), indent=2))
        metrics = run_dir / METRICS
        if resuming:
            repair = truncate_metrics(metrics, trainer.step)
            if repair.bad_lines or repair.missing_steps:
                print(f"warning: {metrics}: kept {repair.kept} records up to the checkpoint (step {trainer.step})"
                      + (f"; skipped unreadable line(s) {_ranges(repair.bad_lines)}" if repair.bad_lines else "")
                      + (f"; no record is left for step(s) {_ranges(repair.missing_steps)}"
                         if repair.missing_steps else ""), file=sys.stderr)
        else:  # a new file (a new inode): a reader holding an offset in an older one notices
            (run_dir / (METRICS + ".tmp")).write_text("")
            os.replace(run_dir / (METRICS + ".tmp"), metrics)

        if progress:
            from tqdm import tqdm

            bar = tqdm(total=config.steps, initial=trainer.step, desc=f"{config.optimizer}", unit="step",
                       file=sys.stderr, dynamic_ncols=True)
        last: dict[str, Any] = {}
        try:
            with open(metrics, "a") as out:
                for record in trainer.records(distributed.agreed_stop(stop)):
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
                save_atomic(trainer.checkpoint(), checkpoint)
                write_status(run_dir, "stopped", step=trainer.step,
                             signal=signal.Signals(stopped_by[0]).name if stopped_by else None)
                return last, stopped_by[0] if stopped_by else None, trainer.step
            write_status(run_dir, "finished", step=trainer.step)
            return last, None, trainer.step
        except KeyboardInterrupt:
            _try_status(run_dir, "failed", step=trainer.step,
                        error="interrupted by a second Ctrl-C; the last checkpoint saved before, if any, is kept")
            raise
        except BaseException as e:
            _try_status(run_dir, "failed", step=trainer.step, error=_first_line(e))
            raise
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if bar is not None:
            bar.close()
        os.close(lock)


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
    p.add_argument("--lr-scheduler-type", default=d.lr_scheduler_type, choices=LR_SCHEDULES,
                   help="the learning-rate schedule over --steps (Hugging Face's names)")
    p.add_argument("--warmup-steps", type=int, default=d.warmup_steps,
                   help="steps of linear warm-up from lr 0 (with constant_with_warmup, linear, cosine)")
    p.add_argument("--peft", default=d.peft, choices=adapters.PEFT_METHODS,
                   help="lora: fine-tune LoRA adapters only (through peft), with any optimizer")
    p.add_argument("--lora-r", type=int, default=d.lora_r, help="LoRA rank (with --peft lora)")
    p.add_argument("--lora-alpha", type=int, default=d.lora_alpha, help="LoRA alpha: the adapter is scaled by alpha/r")
    p.add_argument("--lora-target-modules", default=d.lora_target_modules,
                   help="the linear modules to adapt, comma-separated (an unknown name lists the model's)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last checkpoint, with its saved configuration")
    p.add_argument("--overwrite", action="store_true",
                   help="start a new run in an --out that holds one: its run files are deleted first")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    # data parallel (llm_demo.distributed)
    p.add_argument("--processes", type=int, default=distributed.processes_from_env(),
                   help="data-parallel processes: the run must be started by torchrun --nproc-per-node with "
                        "this number (the default is torchrun's WORLD_SIZE, else 1)")
    return p, _hyper_flags(p)


def read_config(run_dir: Path) -> RunConfig:
    """The validated configuration saved in ``run_dir/config.json``; ``ValueError`` in one sentence otherwise."""
    path = run_dir / CONFIG
    if not path.is_file():
        raise ValueError(f"{run_dir}: no run to resume here (no {CONFIG}); start one without --resume")
    try:
        if path.stat().st_size > 1 << 20:
            raise ValueError(f"larger than {1 << 20:,} bytes")
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as e:  # JSONDecodeError, UnicodeDecodeError are ValueErrors
        raise ValueError(f"{path}: not a readable run configuration ({_first_line(e)})") from None
    return RunConfig.from_json(data, str(path))


SLOT_FD_ENV = "ADAMEZO_SLOT_FD"
"""``llm_demo.runs.start_run`` hands its run a concurrency slot (an ``flock``-ed file) as an inherited
file descriptor and names it here; the command line closes it as soon as the run ends."""


def main(argv: list[str] | None = None) -> int:
    code = 1
    try:
        code = _main(argv)
        return code
    finally:
        distributed.shutdown(clean=code in (0, 128 + signal.SIGTERM, 128 + signal.SIGINT))
        slot = os.environ.get(SLOT_FD_ENV, "")
        if slot.isdigit() and int(slot) > 2:  # free the slot now, not after the interpreter's (slow) teardown
            try:
                os.close(int(slot))
            except OSError:
                pass


def _main(argv: list[str] | None) -> int:
    parser, flags = build_parser()
    args = parser.parse_args(argv)
    run_dir = Path(args.out)
    try:
        if args.resume:
            given = [f"--{f.name.replace('_', '-')}" for f in fields(RunConfig)
                     if f.name != "hyper" and getattr(args, f.name) != parser.get_default(f.name)]
            given += [f"--{name.replace('_', '-')}" for name, dest in flags.items() if getattr(args, dest) is not None]
            if args.overwrite:
                given.append("--overwrite")
            if given:
                raise ValueError(f"--resume continues the run with the settings saved in its {CONFIG}, so "
                                 f"{', '.join(given)} cannot be given with it")
            config = read_config(run_dir)
        else:
            hyper = {name: _parse_hyper(name, getattr(args, dest)) for name, dest in flags.items()
                     if getattr(args, dest) is not None}
            values = {f.name: getattr(args, f.name) for f in fields(RunConfig) if f.name != "hyper"}
            config = RunConfig(**values, hyper=hyper).validate()
        last, signum, step = _run(config, run_dir, args.resume, not args.quiet, args.overwrite)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"error: {e.filename if isinstance(e.filename, str) else run_dir}: {e.strerror or e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"error: interrupted by a second Ctrl-C, without a checkpoint at this step; {run_dir} keeps the "
              "last checkpoint saved before, if any (continue with --resume)", file=sys.stderr)
        return 128 + signal.SIGINT
    if signum is not None:
        print(f"stopped at step {step} of {config.steps} ({signal.Signals(signum).name}); a checkpoint is saved; "
              f"continue with: python -m llm_demo.finetune --out {run_dir} --resume", file=sys.stderr)
        return 128 + signum
    summary = {"step": step} | {k: last[k] for k in ("forward_passes", "train_loss", "eval_accuracy",
                                                     "test_accuracy") if k in last}
    if distributed.is_main():
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
