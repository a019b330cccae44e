"""Data parallel fine-tuning under ``torchrun``: one training across N processes.

    torchrun --standalone --nproc-per-node 2 -m llm_demo.finetune --optimizer adamezo --out runs/NAME ...
    python -m torch.distributed.run --standalone --nproc-per-node 2 -m llm_demo.finetune ...   # the same

``torchrun`` sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``; with ``WORLD_SIZE`` > 1 :func:`setup` joins
the process group (gloo on the CPU, NCCL on CUDA, where the device is ``cuda:LOCAL_RANK``). What every
rank does, and why the records equal a one-process run with the same global batch:

- Every rank draws the same global batch (a pure function of (seed, step)) and keeps its own contiguous
  slice of ``batch_size / N`` examples (:func:`local_slice`; the global batch's padding width is kept).
  ``batch_size`` must be divisible by N.
- Zeroth-order methods: the optimizer gets ``process_group`` (``optimizers`` does the rest): the two
  perturbed losses of a step are averaged over the ranks in one all-reduce of a float64 2-vector (HiZOO:
  one more for L(θ)), so every rank computes the same c and applies the same update from the same seed.
  The demo's loss is the mean cross-entropy over the examples, one scored position per example (no
  token counts, no masking of labels), so with equal slices the mean of the ranks' means *is* the
  global batch's mean; only float round-off differs (the sums are taken in another order).
- First-order Adam/AdamW: the model is wrapped in ``DistributedDataParallel``, which averages the
  gradients (the mean of the ranks' mean gradients is the global mean gradient for equal slices); the
  recorded train loss is the ranks' losses averaged (one more all-reduce of one float64).
- Forward passes are counted per global batch, as in one process: each rank counts its own closure calls,
  and all ranks make the same calls, so ``forward_passes`` is the one-process count.
- Rank 0 alone claims the run folder (the lock), evaluates (dev and test, on the whole split, exactly as
  one process does), and writes records, checkpoints and the status. The other ranks train without a run
  folder; on ``--resume`` every rank loads the checkpoint (a ZO log is replayed on every rank).
- Stopping: a SIGTERM/SIGINT on any rank stops every rank after the same step (:func:`agreed_stop`: an
  all-reduce of one int a step), and rank 0 saves the checkpoint.

Communication a step: ZO 16 bytes (HiZOO 24) plus 8 bytes for the stop flag; DDP Adam: the gradients
(4 bytes a parameter in float32) plus the loss and the stop flag. The README's "Data parallel" section has
the measured table.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

#: The environment variables ``torchrun`` sets for every worker.
ENV = ("WORLD_SIZE", "RANK", "LOCAL_RANK")
#: How long a rank waits for the others in a collective before it fails (a rank that died, a hung step).
TIMEOUT = timedelta(minutes=10)


@dataclass(frozen=True)
class Group:
    """This process's place in a data-parallel run."""

    rank: int
    world_size: int
    local_rank: int
    backend: str
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0


_GROUP: Group | None = None


def env_world() -> tuple[int, int, int] | None:
    """(world size, rank, local rank) from ``torchrun``'s environment, or None outside torchrun.
    ``ValueError`` if the variables are there but not valid."""
    if "WORLD_SIZE" not in os.environ:
        return None
    values = []
    for name in ENV:
        text = os.environ.get(name, "")
        if not text.isdigit():
            raise ValueError(f"environment variable {name}={text!r:.40}; allowed: an integer >= 0 (torchrun sets "
                             f"{', '.join(ENV)} for every process it starts)")
        values.append(int(text))
    world, rank, local = values
    if world < 1 or rank >= world:
        raise ValueError(f"environment: RANK={rank} with WORLD_SIZE={world}; allowed: WORLD_SIZE >= 1 and "
                         "0 <= RANK < WORLD_SIZE")
    return world, rank, local


def processes_from_env() -> int:
    """The number of processes of this run: ``WORLD_SIZE`` under torchrun, else 1 (``--processes``' default)."""
    try:
        world = env_world()
    except ValueError:
        return 1
    return world[0] if world else 1


def current() -> Group | None:
    """The group :func:`setup` joined, or None in one process."""
    return _GROUP


def is_main() -> bool:
    """Whether this process writes the run's files: rank 0, or the only process."""
    return _GROUP is None or _GROUP.main


def check_cuda_processes(device: torch.device, size: int) -> None:
    """``ValueError`` in one sentence unless ``size`` processes on CUDA can each take ``cuda:LOCAL_RANK``
    (two processes on one GPU is NCCL's "Duplicate GPU detected", deep inside the first collective)."""
    if device.index not in (None, 0) or torch.cuda.device_count() < size:
        raise ValueError(f"device {device} with {size} processes: each process uses cuda:LOCAL_RANK, so give "
                         f"--device cuda (or auto) and at least {size} CUDA devices (found "
                         f"{torch.cuda.device_count()}), or --device cpu")


def setup(processes: int, batch_size: int, device: torch.device) -> Group | None:
    """Join the data-parallel group for a run of ``processes`` processes on ``device`` (already checked
    to exist) with global batch ``batch_size``; None for one process. Idempotent. ``ValueError`` in one
    sentence if the launch does not fit the run's settings."""
    global _GROUP
    if _GROUP is not None:
        return _GROUP
    world = env_world()
    size = world[0] if world else 1
    if size != processes:
        how = (f"torchrun --standalone --nproc-per-node {processes} -m llm_demo.finetune ..." if processes > 1
               else "python -m llm_demo.finetune ...")
        raise ValueError(f"this run is set for processes={processes}, but {size} process{'es' if size > 1 else ''} "
                         f"{'were' if size > 1 else 'was'} started; start it with {how}")
    if size == 1:
        return None
    _, rank, local = world
    if batch_size % size:
        raise ValueError(f"batch_size={batch_size} cannot be split evenly over {size} processes; allowed: a "
                         f"multiple of {size} (every process evaluates batch_size / {size} examples)")
    if device.type == "cuda":
        check_cuda_processes(device, size)
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
        backend = "nccl"
    elif device.type == "cpu":
        backend = "gloo"
    else:
        raise ValueError(f"device {device}: data parallel runs on the CPU (gloo) or CUDA (NCCL)")
    if not dist.is_available():
        raise ValueError("this torch has no torch.distributed; run with one process")
    if not dist.is_initialized():
        kwargs: dict[str, Any] = {"device_id": device} if backend == "nccl" else {}
        dist.init_process_group(backend, timeout=TIMEOUT, **kwargs)
    _GROUP = Group(rank=rank, world_size=size, local_rank=local, backend=backend, device=device)
    return _GROUP


def shutdown(clean: bool) -> None:
    """Leave the group at the end of the process. ``clean``: every rank got here the same way, so they
    wait for each other first (no rank tears the group down while another still uses it)."""
    global _GROUP
    if _GROUP is None or not dist.is_initialized():
        _GROUP = None
        return
    try:
        if clean:
            dist.barrier()
        dist.destroy_process_group()
    finally:
        _GROUP = None


def optimizer_options(zeroth_order: bool) -> dict[str, Any]:
    """What ``make_optimizer`` gets besides the hyperparameters: the process group for a ZO method."""
    if _GROUP is None or not zeroth_order:
        return {}
    return {"process_group": dist.group.WORLD}


def wrap_model(model: torch.nn.Module, zeroth_order: bool) -> torch.nn.Module:
    """The module the training closure calls: ``DistributedDataParallel(model)`` for a first-order
    method (it averages the gradients in backward), the model itself otherwise."""
    if _GROUP is None or zeroth_order:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [_GROUP.device.index] if _GROUP.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def local_slice(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """This rank's contiguous slice of the global batch (rows ``rank·k`` to ``(rank+1)·k``, k = batch / N),
    at the global batch's width (its padding columns are kept, so each example is computed as in one process)."""
    if _GROUP is None:
        return batch
    return rows_of(batch, _GROUP.rank, _GROUP.world_size)


def rows_of(batch: dict[str, torch.Tensor], rank: int, world_size: int) -> dict[str, torch.Tensor]:
    """Rows ``rank·k`` to ``(rank+1)·k`` (k = batch / world_size) of a collated batch, every column kept
    (``local_slice`` for this process's group; ``llm_demo.trainer`` for Trainer's)."""
    k = batch["input_ids"].shape[0] // world_size
    lo = rank * k
    return {key: (value if key == "verbalizer_ids" else value[lo:lo + k]) for key, value in batch.items()}


def mean_loss(loss: torch.Tensor, zeroth_order: bool) -> torch.Tensor:
    """The step's loss over the global batch: a ZO optimizer already returns the ranks' average; a
    first-order one returns its rank's, averaged here (one all-reduce of one float64)."""
    if _GROUP is None or zeroth_order:
        return loss
    total = loss.detach().to(torch.float64).reshape(1).clone()
    dist.all_reduce(total)
    return (total / _GROUP.world_size)[0]


def agreed_stop(stop: threading.Event) -> Callable[[], bool]:
    """``stop.is_set``, agreed by every rank: true on all of them as soon as it is set on one (an all-reduce
    (max) of one int64 a step), so they stop after the same step; ``stop`` is then set on every rank."""
    if _GROUP is None:
        return stop.is_set

    def agreed() -> bool:
        flag = torch.tensor([1 if stop.is_set() else 0], dtype=torch.int64, device=_comm_device())
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if flag.item():
            stop.set()
        return bool(flag.item())

    return agreed


def _comm_device() -> torch.device:
    return _GROUP.device if _GROUP is not None and _GROUP.backend == "nccl" else torch.device("cpu")


def follow(config: Any, run_dir: Path, resume: bool) -> tuple[dict[str, Any], int | None, int]:
    """What a rank other than 0 runs instead of ``finetune._run``: the same training (checkpoint loaded on
    ``resume``), no run folder, no records written. Returns (last record, stopping signal, step)."""
    # The module ``config`` comes from: under ``-m llm_demo.finetune`` that is ``__main__``, whose RunConfig is
    # not ``llm_demo.finetune.RunConfig`` (the file is imported twice), so take its own Trainer and loader.
    finetune = sys.modules[type(config).__module__]
    CHECKPOINT, Trainer, load_checkpoint = finetune.CHECKPOINT, finetune.Trainer, finetune.load_checkpoint

    stop = threading.Event()
    stopped_by: list[int] = []

    def on_signal(signum, frame):
        stopped_by.append(signum)
        stop.set()

    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        checkpoint = run_dir / CHECKPOINT
        ckpt = load_checkpoint(checkpoint, config) if resume and checkpoint.exists() else None
        trainer = Trainer(config, None)
        if ckpt is not None:
            trainer.restore(ckpt)
            del ckpt
        last: dict[str, Any] = {}
        for record in trainer.records(agreed_stop(stop)):
            last = record
        return last, (stopped_by[0] if stopped_by and trainer.step < config.steps else None), trainer.step
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
