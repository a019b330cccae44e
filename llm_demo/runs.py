"""Start fine-tuning runs in the background, find them again, read their records, stop them.

A run is a folder (``runs/NAME``) written by ``python -m llm_demo.finetune`` running as a detached
subprocess: ``config.json``, ``metrics.jsonl`` (one JSON record a line, appended and flushed),
``status.json`` (running / finished / failed / stopped), ``pid``, ``lock`` (held by the run's process),
``checkpoint.pt``, and from ``start_run`` also ``started``, ``log.txt`` (the process's own output) and
``owner`` (the sha256 of the run's stop token). Everything here reads those files, so a run outlives the
browser tab that started it and a reloaded page finds it again.

A run is shown to people by :func:`run_label` ("AdaMeZO · lr 1e-3 · seed 0"); a new run's folder is
named after the same settings (``adamezo-lr1e-3-s0``, then ``-2``, ``-3``, ...). A stopped run (or one
that failed with a checkpoint) continues with :func:`resume_run`, which runs ``--resume`` in its folder.

Limits on concurrent runs (``start_run``, ``resume_run``): at most ``MAX_CONCURRENT_CPU`` runs on the CPU and
``MAX_CONCURRENT_PER_CUDA_DEVICE`` on each CUDA device. A run holds a slot, an ``flock``-ed file in
``RUNS_DIR/.slots``, taken atomically before its process starts and inherited by it, so the kernel frees
the slot when the process ends, even by ``kill -9``. Runs started by hand from the command line hold no
slot. A data-parallel run of N processes (``processes=N``, started with ``torchrun``) holds N slots: N of
the CPU's (so on this 2-core machine a 2-process run takes both), or one on each of cuda:0 … cuda:N−1;
``torchrun``'s agent process holds them for the run's lifetime. Stopping a run needs the token ``start_run`` returned (the app keeps it in the session that
started the run), and only ever signals the process that runs in that run folder.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

from .finetune import CHECKPOINT, CONFIG, DEMO_DEFAULTS, METRICS, PID, SLOT_FD_ENV, STATUS, RunConfig, write_status

RUNS_DIR = Path(os.environ.get("ADAMEZO_RUNS_DIR", "runs"))
MAX_CONCURRENT_CPU = 2
MAX_CONCURRENT_PER_CUDA_DEVICE = 2  # side by side is the page's point; a model that fits once: use the CLI
SLOTS = ".slots"
OWNER = "owner"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass
class RunInfo:
    """What a run folder says about its run."""

    name: str
    path: Path
    status: str  # "running" | "finished" | "failed" | "stopped"
    config: dict[str, Any]
    pid: int | None
    started_at: float
    last: dict[str, Any] | None
    error: str | None
    token: str | None = None  # the stop token; only ``start_run``'s answer carries it
    stopped_at: int | None = None  # the step a stopped run stopped at (status.json)
    stop_signal: str | None = None  # the signal that stopped it (SIGTERM from the page or a shell, SIGINT)
    resumed_at: float | None = None  # when resume_run last started it again

    @property
    def steps(self) -> int:
        return int(self.config.get("steps", 0))

    @property
    def starting(self) -> bool:
        """Running, and no record yet from this start (loading the model, the zero-shot evaluation, the first
        step; after a resume: replaying the checkpoint)."""
        if self.status != "running":
            return False
        if self.last is None:
            return True
        written = _mtime(self.path / METRICS)
        return self.resumed_at is not None and (written is None or written < self.resumed_at)

    @property
    def resumable(self) -> bool:
        """Stopped, or failed, with a checkpoint to continue from."""
        return self.status in ("stopped", "failed") and (self.path / CHECKPOINT).is_file()

    @property
    def reason(self) -> str | None:
        """Why a run is not running any more, in a sentence (None while it runs or once it finished)."""
        if self.status == "stopped":
            by = {"SIGTERM": "asked to stop (the page's Stop button or a kill)", "SIGINT": "interrupted (Ctrl-C)"}
            how = by.get(self.stop_signal or "", "stopped")
            at = f" at step {self.stopped_at} of {self.steps}" if self.stopped_at is not None else ""
            return f"{how}{at}; a checkpoint is saved, so it can be resumed"
        if self.status == "failed":
            return self.error or "the process ended without finishing"
        return None

    @property
    def progress(self) -> float:
        """Completed fraction of the planned steps, in [0, 1]."""
        done = self.last["step"] if self.last else 0
        return min(1.0, done / self.steps) if self.steps else 0.0


def _alive(pid: int, run_dir: str | Path | None = None, starting: bool = False) -> bool:
    """Whether ``pid`` is a live fine-tune process (not a zombie, not a recycled pid), running in
    ``run_dir`` if given (its ``--out``, resolved against the process's working directory).

    A process in the middle of ``exec`` shows an empty command line for a moment (``Popen`` has
    returned by then): that counts as alive if ``starting`` (for reading a run's state), else not (a
    stop never signals a process it cannot identify).
    """
    try:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().split(") ")[-1].startswith("Z"):
                return False
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
        if not any(argv):
            return starting
        at = [i for i, a in enumerate(argv) if a == b"llm_demo.finetune" or a.endswith(b"llm_demo/finetune.py")]
        if not at:
            return False
        if run_dir is None:
            return True
        out = None
        args = argv[at[0] + 1:]
        for i, a in enumerate(args):  # as argparse reads it: --out X, --out=X, or the unique prefix --ou
            if a in (b"--out", b"--ou") and i + 1 < len(args):
                out = args[i + 1]
            elif a.startswith((b"--out=", b"--ou=")):
                out = a.partition(b"=")[2]
        if out is None:
            return False
        cwd = os.readlink(f"/proc/{pid}/cwd")
        return os.path.realpath(os.path.join(cwd, os.fsdecode(out))) == os.path.realpath(run_dir)
    except (OSError, ValueError):
        if not Path("/proc/self").exists():  # no procfs: the best we can say
            try:
                os.kill(pid, 0)
                return True
            except OSError:
                return False
        return False


def _last_record(path: Path) -> dict[str, Any] | None:
    """The last complete record of ``metrics.jsonl``, reading only the file's tail."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 65536))
            lines = f.read().split(b"\n")
    except OSError:
        return None
    for line in reversed(lines[:-1] if lines and lines[-1] else lines):
        try:
            return json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
    return None


def run_info(run_dir: str | Path) -> RunInfo:
    """Read a run folder. A run whose process died without saying so is reported as failed."""
    path = Path(run_dir)
    config = _json_object(path / CONFIG) or {}
    try:
        int(config.get("steps", 0))
    except (TypeError, ValueError, OverflowError):
        config = {k: v for k, v in config.items() if k != "steps"}
    status = _json_object(path / STATUS) or {"status": "running"}
    try:
        pid = int((path / PID).read_text(errors="replace")[:32])
        pid = pid if pid > 0 else None
    except (OSError, ValueError):
        pid = None
    state, error = status.get("status", "running"), status.get("error")
    if state not in ("running", "finished", "failed", "stopped"):
        state = "running"
    error = str(error)[:1000] if error is not None else None
    started_at = _mtime(path / "started") or _mtime(path) or 0.0
    if state == "running" and not (pid and _alive(pid, path, starting=True)):
        young = _mtime(path / "started") is not None and time.time() - started_at < 60 and pid is None
        if not young:
            state, error = "failed", error or _log_tail(path) or "the process ended without finishing"
    stopped_at = status.get("step") if state == "stopped" and isinstance(status.get("step"), int) else None
    signal_name = status.get("signal") if state == "stopped" and isinstance(status.get("signal"), str) else None
    return RunInfo(path.name, path, state, config, pid, started_at, _last_record(path / METRICS), error,
                   stopped_at=stopped_at, stop_signal=signal_name, resumed_at=_mtime(path / RESUMED))


RESUMED = "resumed"  # touched by resume_run: records older than it are from before the resume


def _lr_of(config: dict[str, Any]) -> float | None:
    hyper = config.get("hyper") if isinstance(config.get("hyper"), dict) else {}
    optimizer = config.get("optimizer")
    lr = hyper.get("lr", DEMO_DEFAULTS.get(optimizer, {}).get("lr") if isinstance(optimizer, str) else None)
    if lr is None and isinstance(optimizer, str):
        from optimizers import OPTIMIZERS

        entry = OPTIMIZERS.get(optimizer)
        lr = entry.specs["lr"].default if entry is not None and "lr" in entry.specs else None
    return lr if isinstance(lr, (int, float)) and not isinstance(lr, bool) else None


def fmt_lr(lr: float) -> str:
    """A learning rate as people write it: 1e-3, 3e-4, 2.5e-4, 0.01."""
    if lr == 0 or lr >= 0.01:
        return f"{lr:g}"
    mantissa, exponent = f"{lr:e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"


def run_label(config: dict[str, Any]) -> str:
    """A run's name for people: "AdaMeZO · lr 1e-3 · seed 0", "MeZO · lr 0.01 · LoRA r 8 · seed 0" (from its
    settings, no timestamp)."""
    from optimizers import OPTIMIZERS

    optimizer = config.get("optimizer")
    title = OPTIMIZERS[optimizer].title if isinstance(optimizer, str) and optimizer in OPTIMIZERS else str(optimizer)
    parts = [title]
    lr = _lr_of(config)
    if lr is not None:
        parts.append(f"lr {fmt_lr(lr)}")
    if config.get("peft") == "lora" and isinstance(config.get("lora_r"), int):
        parts.append(f"LoRA r {config['lora_r']}")
    seed = config.get("seed")
    if isinstance(seed, int) and not isinstance(seed, bool):
        parts.append(f"seed {seed}")
    return " · ".join(parts)


def _folder_name(optimizer: str, hyper: dict[str, Any], seed: int, lora_r: int | None = None) -> str:
    """A new run's folder name from its settings: ``adamezo-lr1e-3-s0``, ``mezo-lr0.01-lora8-s0`` (a suffix is
    added if taken)."""
    lr = _lr_of({"optimizer": optimizer, "hyper": hyper})
    lora = f"-lora{lora_r}" if lora_r is not None else ""
    return f"{optimizer}{f'-lr{fmt_lr(lr)}' if lr is not None else ''}{lora}-s{seed}"[:60]


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def _json_object(path: Path) -> dict[str, Any] | None:
    """The JSON object in a small file, or None if it is missing, unreadable, too big or not an object."""
    try:
        if path.stat().st_size > 1 << 20:
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _log_tail(path: Path, lines: int = 3) -> str | None:
    try:
        with open(path / "log.txt", "rb") as f:  # the tail only: a chatty log can be large
            f.seek(max(0, f.seek(0, os.SEEK_END) - 16384))
            text = f.read().decode("utf-8", "replace").strip().splitlines()
    except OSError:
        return None
    errors = [line for line in text if line.startswith("error:") or "Error" in line]
    return (errors[-1] if errors else " ".join(text[-lines:])) or None


def list_runs(runs_dir: str | Path = RUNS_DIR) -> list[RunInfo]:
    """Every run folder under ``runs_dir``, newest first."""
    root = Path(runs_dir)
    if not root.is_dir():
        return []
    infos = [run_info(p) for p in root.iterdir() if p.is_dir() and ((p / "started").exists() or (p / CONFIG).exists())]
    return sorted(infos, key=lambda r: r.started_at, reverse=True)


def count_running(runs_dir: str | Path = RUNS_DIR, device: str | None = None) -> int:
    """How many runs are running (on ``device`` only, if given: "cpu" or "cuda")."""
    return sum(1 for r in list_runs(runs_dir) if r.status == "running"
               and (device is None or _device_kind(r.config.get("device", "auto")) == device))


def _device_kind(device: Any) -> str:
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return "cuda" if isinstance(device, str) and device.startswith("cuda") else "cpu"


# ------------------------------------------------------------------------------------- slots
def device_slot(device: str) -> tuple[str, int]:
    """The slot family of a run on ``device`` and its limit: ("cpu", 2), ("cuda0", 2), ("cuda1", 2), ..."""
    if _device_kind(device) == "cpu":
        return "cpu", MAX_CONCURRENT_CPU
    index = device.partition(":")[2]
    if not index:
        import torch

        index = str(torch.cuda.current_device()) if torch.cuda.is_available() else "0"
    if not index.isdigit():
        raise ValueError(f"invalid device={device!r:.100}; allowed: 'auto', 'cpu', 'cuda' or 'cuda:N'")
    return f"cuda{int(index)}", MAX_CONCURRENT_PER_CUDA_DEVICE


def run_slots(device: str, processes: int) -> list[tuple[str, int]]:
    """The (family, limit) of every slot a run of ``processes`` processes on ``device`` takes: the same family
    N times on the CPU, one per CUDA device used (cuda:0 … cuda:N−1) for a data-parallel CUDA run."""
    family, limit = device_slot(device)
    if processes == 1:
        return [(family, limit)]
    if family == "cpu":
        return [(family, limit)] * processes
    return [(f"cuda{i}", limit) for i in range(processes)]


def check_processes(processes: Any, device: str, batch_size: int) -> int:
    """``processes`` if a run on ``device`` with global batch ``batch_size`` can use that many; ``ValueError``
    saying what is allowed otherwise (CPU: 1 to ``MAX_CONCURRENT_CPU``, one core each; CUDA: 1 to the number
    of CUDA devices, one each; the batch must split evenly)."""
    if _device_kind(device) == "cpu":
        most, what = MAX_CONCURRENT_CPU, f"on the CPU (the limit of concurrent CPU processes is {MAX_CONCURRENT_CPU})"
    else:
        import torch

        most, what = max(1, torch.cuda.device_count()), "on CUDA (one process per CUDA device)"
        if processes != 1 and device not in ("cuda", "auto"):
            raise ValueError(f"processes={processes} with device={device!r}: a data-parallel run uses cuda:0 to "
                             f"cuda:{processes - 1}, one per process; choose device 'cuda' or 'auto'")
    if isinstance(processes, bool) or not isinstance(processes, int) or not 1 <= processes <= most:
        raise ValueError(f"invalid processes={processes!r:.40}; allowed: an integer from 1 to {most} {what}")
    if batch_size % processes:
        raise ValueError(f"batch size {batch_size} cannot be split evenly over {processes} processes; allowed: a "
                         f"multiple of {processes}")
    return processes


def acquire_slots(runs_dir: str | Path, slots: list[tuple[str, int]]) -> list[int] | None:
    """Take every slot in ``slots`` (family, limit), or none of them: their descriptors, or None."""
    held: list[int] = []
    for family, limit in slots:
        fd = acquire_slot(runs_dir, family, limit)
        if fd is None:
            for h in held:
                os.close(h)
            return None
        held.append(fd)
    return held


def _slot_path(runs_dir: str | Path, family: str, i: int) -> Path:
    return Path(runs_dir) / SLOTS / f"{family}.{i}"


def acquire_slot(runs_dir: str | Path, family: str, limit: int, tries: int = 3) -> int | None:
    """Take one of the ``limit`` slots of ``family`` (an exclusive ``flock``); its file descriptor, or None.

    The lock belongs to the open file: it passes to a child that inherits the descriptor and is freed
    when the last descriptor closes, so a slot handed to a run's process is freed when that process
    ends, however it ends. ``tries`` passes, a few milliseconds apart, ride out a ``slots_in_use`` probe.
    """
    (Path(runs_dir) / SLOTS).mkdir(parents=True, exist_ok=True)
    for attempt in range(tries):
        for i in range(limit):
            fd = os.open(_slot_path(runs_dir, family, i), os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except OSError:
                os.close(fd)
        time.sleep(0.005 * (attempt + 1))
    return None


def slots_in_use(runs_dir: str | Path, family: str, limit: int) -> int:
    """How many of the ``limit`` slots of ``family`` are held now (each is probed for an instant)."""
    used = 0
    for i in range(limit):
        try:
            fd = os.open(_slot_path(runs_dir, family, i), os.O_RDONLY)
        except OSError:
            continue  # never taken
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            used += 1
        finally:
            os.close(fd)
    return used


def _where(family: str) -> str:
    return "on the CPU" if family == "cpu" else f"on CUDA device {family.removeprefix('cuda')}"


def _token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# ------------------------------------------------------------------------------------- runs
def start_run(optimizer: str, *, steps: int, hyper: dict[str, Any] | None = None, name: str | None = None,
              model: str | None = None, data: str | None = None, device: str = "auto", seed: int = 0,
              batch_size: int = 16, eval_every: int = 50, lora_r: int | None = None, runs_dir: str | Path = RUNS_DIR,
              max_concurrent_cpu: int = MAX_CONCURRENT_CPU,
              max_concurrent_cuda: int = MAX_CONCURRENT_PER_CUDA_DEVICE, processes: int = 1) -> RunInfo:
    """Start ``python -m llm_demo.finetune`` for one run as a detached subprocess and return at once.

    The returned ``RunInfo.token`` is the run's stop token (``stop_run`` needs it; only its sha256 is
    stored). ``lora_r``: fine-tune LoRA adapters of that rank (``--peft lora``, the other LoRA settings at
    their defaults); None: all weights. Raises ``ValueError`` for a bad setting, a name already in use, or
    when the device's limit of concurrent runs (``max_concurrent_cpu``, ``max_concurrent_cuda`` per CUDA
    device) is reached. ``processes`` > 1 runs one data-parallel training in that many processes
    (``torchrun``; see :func:`check_processes`), which take that many slots.
    """
    config = RunConfig(optimizer=optimizer, steps=steps, hyper=dict(hyper or {}), device=device, seed=seed,
                       batch_size=batch_size, eval_every=eval_every, processes=processes)
    if lora_r is not None:
        config.peft, config.lora_r = "lora", lora_r
    if model:
        config.model = str(model)
    if data:
        config.data = str(data)
    config.validate()
    if not Path(config.model).is_dir():
        raise ValueError(f"{config.model}: no such model folder")
    if not Path(config.data).exists():
        raise ValueError(f"{config.data}: no such task file or folder")
    if name is not None and not _NAME.match(name):
        raise ValueError(f"invalid run name {name!r:.80}; allowed: letters, digits, '.', '_' and '-' (at most 64)")
    check_processes(processes, device, batch_size)
    family, limit = device_slot(device)
    if family != "cpu":
        import torch

        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} was asked for, but CUDA is not available here; use 'cpu' or 'auto'")
        if int(family.removeprefix("cuda")) >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: there is no such CUDA device; allowed: cuda:0 to "
                             f"cuda:{torch.cuda.device_count() - 1}")
        limit = max_concurrent_cuda
    else:
        limit = max_concurrent_cpu
    root = Path(runs_dir)
    slots = acquire_slots(root, [(f, limit) for f, _ in run_slots(device, processes)])
    if slots is None:
        raise ValueError(_busy(family, limit, processes))
    try:
        run_dir = _new_run_dir(root, name or _folder_name(optimizer, config.hyper, seed, lora_r), unique=name is None)
        (run_dir / "started").touch()
        (run_dir / CONFIG).write_text(json.dumps(asdict(config), indent=2))
        token = _launch(run_dir, slots, "w", processes)
    finally:
        for slot in slots:
            os.close(slot)
    info = run_info(run_dir)
    info.token = token
    return info


def _busy(family: str, limit: int, processes: int) -> str:
    if processes == 1:
        return (f"{limit} runs are already running {_where(family)} (the limit is {limit}); "
                "wait for one to finish or stop one first")
    where = "on the CPU" if family == "cpu" else f"on CUDA devices 0 to {processes - 1}"
    return (f"a run of {processes} processes needs {processes} free run slots {where}, and fewer are free (the "
            f"limit is {limit} processes{' per device' if family != 'cpu' else ''}); wait for a run to finish or "
            "stop one first")


def launch_command(run_dir: Path, processes: int = 1) -> list[str]:
    """The command a run is started with: ``python -m llm_demo.finetune --out run_dir --resume --quiet``, under
    ``python -m torch.distributed.run --standalone --nproc-per-node N`` for N > 1 processes."""
    finetune = ["-m", "llm_demo.finetune", "--out", str(run_dir), "--resume", "--quiet"]
    if processes == 1:
        return [sys.executable, *finetune]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes),
            *finetune]


def _launch(run_dir: Path, slots: list[int], log_mode: str, processes: int = 1) -> str:
    """Start the run in ``run_dir`` (:func:`launch_command`) holding ``slots``; returns the new stop token."""
    token = secrets.token_urlsafe(24)
    (run_dir / OWNER).write_text(_token_digest(token))
    cmd = launch_command(run_dir, processes)
    # The slots' descriptors go to the child, which holds them for as long as it lives (under torchrun: its
    # agent, the parent of the workers; the workers do not inherit them, so the slot variable is not set).
    env = {k: v for k, v in os.environ.items() if k != SLOT_FD_ENV}
    if processes == 1:
        env[SLOT_FD_ENV] = str(slots[0])
    with open(run_dir / "log.txt", log_mode) as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, cwd=os.getcwd(), pass_fds=tuple(slots), env=env)
    (run_dir / PID).write_text(str(proc.pid))
    return token


def resume_run(run_dir: str | Path, runs_dir: str | Path = RUNS_DIR, max_concurrent_cpu: int = MAX_CONCURRENT_CPU,
               max_concurrent_cuda: int = MAX_CONCURRENT_PER_CUDA_DEVICE) -> RunInfo:
    """Continue a stopped run (or one that failed with a checkpoint) in the background, from its checkpoint,
    with the settings in its ``config.json`` (``--resume``: its records are those of an uninterrupted run).

    Takes a concurrency slot like :func:`start_run`; the returned ``RunInfo.token`` is the new stop token
    (the session that resumes a run is the one that can stop it). ``ValueError`` in one sentence otherwise.
    """
    path = Path(run_dir)
    info = run_info(path)
    if not info.resumable:
        why = {"running": "it is running", "finished": "it has finished"}.get(
            info.status, "it has no checkpoint to continue from")
        raise ValueError(f"run {path.name!r} cannot be resumed: {why}")
    device = info.config.get("device", "auto")
    device = device if isinstance(device, str) else "auto"
    processes = info.config.get("processes", 1)
    check_processes(processes, device, int(info.config.get("batch_size", 16)))
    family, limit = device_slot(device)
    limit = max_concurrent_cpu if family == "cpu" else max_concurrent_cuda
    slots = acquire_slots(Path(runs_dir), [(f, limit) for f, _ in run_slots(device, processes)])
    if slots is None:
        raise ValueError(_busy(family, limit, processes))
    try:
        # Until the process writes its own status: running, young and without a pid (see run_info).
        (path / PID).unlink(missing_ok=True)
        (path / "started").touch()
        (path / RESUMED).touch()
        write_status(path, "running")
        token = _launch(path, slots, "a", processes)
    finally:
        for slot in slots:
            os.close(slot)
    info = run_info(path)
    info.token = token
    return info


def _new_run_dir(root: Path, name: str, unique: bool) -> Path:
    """Create ``root/name`` (atomically: two starts never share a folder); with ``unique``, add -2, -3, ..."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(1, 100 if unique else 2):
        run_dir = root / (name if i == 1 else f"{name}-{i}")
        try:
            run_dir.mkdir()
            return run_dir
        except FileExistsError:
            continue
    raise ValueError(f"a run named {name!r} already exists in {root}; choose another name")


class Cursor(NamedTuple):
    """A position in a run's ``metrics.jsonl``: a byte offset in one version of the file (its inode and
    first bytes tell a rewritten file from the one the offset was taken in)."""

    offset: int = 0
    inode: int | None = None
    head: bytes = b""


class Records(NamedTuple):
    """What ``read_records`` read: new records, where to read next, and what happened on the way."""

    records: list[dict[str, Any]]  # the records after the cursor; all of them when ``restarted``
    cursor: Cursor
    restarted: bool  # the file was rewritten (a resumed run) since the cursor: replace what you had
    skipped: int  # lines that were not a readable record (corrupt), left out


_HEAD = 256


def read_records(run_dir: str | Path, cursor: Cursor | None = None) -> Records:
    """The complete records appended to ``metrics.jsonl`` since ``cursor`` (``None``: from the start).

    A line still being written is left for the next call; a line that is not a JSON object with an
    integer ``step`` is skipped and counted. A resumed run rewrites the file: when the file is not the
    cursor's any more (another inode or other first bytes), is shorter than the cursor, or the cursor
    does not sit at a line's end, the whole file is read again and ``restarted`` says so.
    """
    cursor = cursor or Cursor()
    path = Path(run_dir) / METRICS
    try:
        f = open(path, "rb")
    except OSError:
        return Records([], Cursor(), cursor.offset > 0, 0)
    with f:
        st = os.fstat(f.fileno())
        head = f.read(min(_HEAD, cursor.offset) if cursor.offset else 0)
        offset = cursor.offset
        restarted = offset > 0 and (cursor.inode != st.st_ino or st.st_size < offset or head != cursor.head)
        if offset > 0 and not restarted:
            f.seek(offset - 1)
            restarted = f.read(1) != b"\n"
        if restarted:
            offset = 0
        f.seek(offset)
        data = f.read(max(0, st.st_size - offset))
    end = data.rfind(b"\n") + 1
    records, skipped = [], 0
    for line in data[:end].splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            record = None
        if isinstance(record, dict) and isinstance(record.get("step"), int):
            records.append(record)
        else:
            skipped += 1
    new_offset = offset + end
    head = (data if offset == 0 else cursor.head + data)[:min(_HEAD, new_offset)]  # the file's first bytes
    return Records(records, Cursor(new_offset, st.st_ino, head), restarted, skipped)


def stop_run(run_dir: str | Path, token: str) -> bool:
    """Ask a running run to stop: it finishes its step, saves a checkpoint and says "stopped".

    ``token`` must be the run's own (``start_run`` returned it), else ``ValueError``; the signal goes only
    to the process that runs in ``run_dir``. Returns whether a running process was asked to stop.
    """
    path = Path(run_dir)
    try:
        digest = (path / OWNER).read_text(errors="replace").strip()
    except OSError:
        digest = ""
    if not (isinstance(token, str) and digest and hmac.compare_digest(digest, _token_digest(token))):
        raise ValueError(f"run {path.name!r} can only be stopped by the session that started it")
    info = run_info(path)
    if info.status != "running" or info.pid is None or not _alive(info.pid, path):
        return False
    try:
        os.kill(info.pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    return True
