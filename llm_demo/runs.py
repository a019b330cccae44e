"""Start fine-tuning runs in the background, find them again, read their records, stop them.

A run is a folder (``runs/NAME``) written by ``python -m llm_demo.finetune`` running as a detached
subprocess: ``config.json``, ``metrics.jsonl`` (one JSON record a line, appended and flushed),
``status.json`` (running / finished / failed / stopped), ``pid`` and ``log.txt`` (the process's own
output). Everything here reads those files, so a run outlives the browser tab that started it and a
reloaded page finds it again.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .finetune import CONFIG, METRICS, STATUS, RunConfig

RUNS_DIR = Path(os.environ.get("ADAMEZO_RUNS_DIR", "runs"))
MAX_CONCURRENT_CPU = 2
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

    @property
    def steps(self) -> int:
        return int(self.config.get("steps", 0))

    @property
    def progress(self) -> float:
        """Completed fraction of the planned steps, in [0, 1]."""
        done = self.last["step"] if self.last else 0
        return min(1.0, done / self.steps) if self.steps else 0.0


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a live fine-tune process (not a zombie, not a recycled pid)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().split(") ")[-1].startswith("Z"):
                return False
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"llm_demo.finetune" in f.read()
    except OSError:
        try:
            os.kill(pid, 0)
            return True
        except OSError:
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
    try:
        config = json.loads((path / CONFIG).read_text())
    except (OSError, json.JSONDecodeError):
        config = {}
    try:
        status = json.loads((path / STATUS).read_text())
    except (OSError, json.JSONDecodeError):
        status = {"status": "running"}
    try:
        pid = int((path / "pid").read_text())
    except (OSError, ValueError):
        pid = None
    state, error = status.get("status", "running"), status.get("error")
    if state == "running" and not (pid and _alive(pid)):
        started = path / "started"
        young = started.exists() and time.time() - started.stat().st_mtime < 60 and pid is None
        if not young:
            state, error = "failed", error or _log_tail(path) or "the process ended without finishing"
    started_at = (path / "started").stat().st_mtime if (path / "started").exists() else path.stat().st_mtime
    return RunInfo(path.name, path, state, config, pid, started_at, _last_record(path / METRICS), error)


def _log_tail(path: Path, lines: int = 3) -> str | None:
    try:
        text = (path / "log.txt").read_text().strip().splitlines()
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


def _device_kind(device: str) -> str:
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return "cuda" if device.startswith("cuda") else "cpu"


def start_run(optimizer: str, *, steps: int, hyper: dict[str, Any] | None = None, name: str | None = None,
              model: str | None = None, data: str | None = None, device: str = "auto", seed: int = 0,
              batch_size: int = 16, eval_every: int = 50, runs_dir: str | Path = RUNS_DIR,
              max_concurrent_cpu: int = MAX_CONCURRENT_CPU) -> RunInfo:
    """Start ``python -m llm_demo.finetune`` for one run as a detached subprocess and return at once.

    Raises ``ValueError`` for a bad setting, a name already in use, or when ``max_concurrent_cpu``
    runs already run on the CPU.
    """
    config = RunConfig(optimizer=optimizer, steps=steps, hyper=dict(hyper or {}), device=device, seed=seed,
                       batch_size=batch_size, eval_every=eval_every)
    if model:
        config.model = str(model)
    if data:
        config.data = str(data)
    config.validate()
    if not Path(config.model).is_dir():
        raise ValueError(f"{config.model}: no such model folder")
    if not Path(config.data).exists():
        raise ValueError(f"{config.data}: no such task file or folder")
    if _device_kind(device) == "cpu":
        running = count_running(runs_dir, "cpu")
        if running >= max_concurrent_cpu:
            raise ValueError(f"{running} runs are already running on the CPU (the limit is {max_concurrent_cpu}); "
                             "wait for one to finish or stop one first")
    root = Path(runs_dir)
    name = name or f"{time.strftime('%Y%m%d-%H%M%S')}-{optimizer}-s{seed}"
    if not _NAME.match(name):
        raise ValueError(f"invalid run name {name!r}; allowed: letters, digits, '.', '_' and '-' (at most 64)")
    run_dir = root / name
    if run_dir.exists():
        raise ValueError(f"a run named {name!r} already exists in {root}; choose another name")
    run_dir.mkdir(parents=True)
    (run_dir / "started").touch()
    (run_dir / CONFIG).write_text(json.dumps(asdict(config), indent=2))
    cmd = [sys.executable, "-m", "llm_demo.finetune", "--out", str(run_dir), "--resume", "--quiet"]
    with open(run_dir / "log.txt", "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, cwd=os.getcwd())
    (run_dir / "pid").write_text(str(proc.pid))
    return run_info(run_dir)


def read_records(run_dir: str | Path, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """The complete records appended to ``metrics.jsonl`` since byte ``offset``, and the new offset.

    A line still being written is left for the next call. A resumed run rewrites the file shorter;
    then the whole file is read again from the start.
    """
    path = Path(run_dir) / METRICS
    try:
        size = path.stat().st_size
    except OSError:
        return [], 0
    if size < offset:
        offset = 0
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read()
    end = data.rfind(b"\n") + 1
    records = [json.loads(line) for line in data[:end].splitlines() if line.strip()]
    return records, offset + end


def stop_run(run_dir: str | Path) -> None:
    """Ask a running run to stop: it finishes its step, saves a checkpoint and says "stopped"."""
    info = run_info(run_dir)
    if info.status != "running" or info.pid is None:
        return
    try:
        os.kill(info.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
