"""Hostile and careless use of the LLM demo: run folders, checkpoints, concurrent starts, stops, paths, records.

CLI probes run in subprocesses: what depends on being a process of its own (a crafted checkpoint, the
folder lock, Ctrl-C, memory, a resume) is a real ``python -m llm_demo.finetune`` each; the usage errors
run ``llm_demo.finetune.main`` one after another in one subprocess (``cli_batch``: each one is what the
command prints and returns; an exception that escapes is printed as the interpreter would, with its
traceback), which saves starting torch a dozen times. The race starts runs from concurrent threads and
processes.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import torch

from llm_demo import runs
from llm_demo.finetune import RunConfig, run, truncate_metrics
from llm_demo.tasks import BUNDLED_GRADED, BUNDLED_MODEL, BUNDLED_TASK

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "llm_demo.finetune"]
RSS_WRAPPER = ("import resource, subprocess, sys; code = subprocess.run(sys.argv[1:]).returncode; "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024); sys.exit(code)")


def cli_many(*argvs, timeout=120, jobs=3) -> list[subprocess.CompletedProcess]:
    """Run the CLI once per argv, ``jobs`` at a time (each loads torch: ~1.5 s of CPU)."""
    results: list = [None] * len(argvs)
    pending = list(enumerate(argvs))
    while pending:
        batch, pending = pending[:jobs], pending[jobs:]
        procs = [(i, subprocess.Popen(CLI + [str(a) for a in argv], cwd=ROOT, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)) for i, argv in batch]
        try:
            for i, proc in procs:
                out, err = proc.communicate(timeout=timeout)
                results[i] = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
        finally:
            for _, proc in procs:  # one that hangs (a lock not kept) must not outlive the test
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    return results


BATCH = """
import contextlib, io, json, sys, traceback
from llm_demo.finetune import main
results = []
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        except BaseException:
            traceback.print_exc()
            code = 1
    results.append([code, err.getvalue()])
print(json.dumps(results))
"""


def cli_batch(*argvs, timeout=180) -> list[subprocess.CompletedProcess]:
    """``main(argv)`` for each argv, in order, in one fresh subprocess: exit code and stderr of each."""
    proc = subprocess.run([sys.executable, "-c", BATCH, json.dumps([[str(a) for a in argv] for argv in argvs])],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    return [subprocess.CompletedProcess(argv, code, "", err)
            for argv, (code, err) in zip(argvs, json.loads(proc.stdout.strip().splitlines()[-1]))]


def _rec(step, loss=0.5):
    return json.dumps({"step": step, "forward_passes": 2 * step, "train_loss": loss})


def one_line(proc, code=2) -> str:
    """The only line of stderr, after checking the exit code and that there is no traceback."""
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def cfg(tiny_model, tiny_task, **kw) -> RunConfig:
    return RunConfig(**({"optimizer": "mezo", "steps": 4, "eval_every": 1000, "batch_size": 4,
                         "model": str(tiny_model), "data": str(tiny_task)} | kw))


@pytest.fixture(scope="module")
def done(tiny_model, tiny_task, tmp_path_factory) -> Path:
    """A finished 4-step MeZO run folder (copy it before changing it)."""
    out = tmp_path_factory.mktemp("done") / "run"
    run(cfg(tiny_model, tiny_task), out, progress=False)
    return out


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("lock"))
    return dst


def read_steps(path: Path) -> list[int]:
    return [json.loads(x)["step"] for x in path.read_text().splitlines()]


def wait_for(predicate, timeout=90.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


def lines_of(path: Path) -> int:
    try:
        return path.read_text().count("\n")
    except OSError:
        return 0


# ------------------------------------------------------------------------- 3. one run per folder
def test_overwrite_clears_the_old_run_and_only_its_files(done, tiny_model, tiny_task, tmp_path):
    """(Without --overwrite the same command is refused: see test_cli_usage_errors_are_one_line.)"""
    from llm_demo.finetune import config_hash

    out = copy_run(done, tmp_path / "run")
    (out / "checkpoint.pt.tmp").write_text("a torn save")
    (out / "notes.txt").write_text("mine")  # not a run file: --overwrite keeps it
    replaced, = cli_batch(["--model", tiny_model, "--data", tiny_task, "--out", out, "--quiet", "--batch-size", "4",
                           "--eval-every", "1000", "--optimizer", "adamezo", "--steps", "3", "--overwrite"])
    assert replaced.returncode == 0, replaced.stderr
    assert json.loads((out / "config.json").read_text())["optimizer"] == "adamezo"
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["step"] == 3 and ckpt["config"]["optimizer"] == "adamezo"
    assert ckpt["config_hash"] == config_hash(RunConfig(**json.loads((out / "config.json").read_text())))
    assert read_steps(out / "metrics.jsonl") == [0, 1, 2, 3] and (out / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "config.json", "lock", "metrics.jsonl",
                                                     "notes.txt", "pid", "status.json"]


def test_a_second_process_is_kept_out_and_ctrl_c_stops_with_a_checkpoint(tiny_model, tiny_task, tmp_path):
    out = tmp_path / "run"
    first = subprocess.Popen(CLI + ["--model", str(tiny_model), "--data", str(tiny_task), "--out", str(out),
                                    "--quiet", "--steps", "1000000", "--eval-every", "1000000", "--batch-size", "2"],
                             cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: lines_of(out / "metrics.jsonl") >= 3)
        resume, over = cli_many(["--out", out, "--resume", "--quiet"],
                                ["--model", tiny_model, "--data", tiny_task, "--out", out, "--quiet", "--overwrite"],
                                timeout=60)
        for proc in (resume, over):
            assert one_line(proc) == (f"error: --out {out}: another process runs in this folder (pid {first.pid}); "
                                      "wait for it to end or stop it, or choose another --out")
        assert first.poll() is None
        n = lines_of(out / "metrics.jsonl")
        wait_for(lambda: lines_of(out / "metrics.jsonl") > n + 3)  # it carries on, alone
        first.send_signal(signal.SIGINT)  # Ctrl-C
        err = first.communicate(timeout=60)[1]
    finally:
        first.kill()
        first.wait()
    status = json.loads((out / "status.json").read_text())
    step = status["step"]
    assert first.returncode == 130 and "Traceback" not in err
    assert err.strip() == (f"stopped at step {step} of 1000000 (SIGINT); a checkpoint is saved; continue with: "
                           f"python -m llm_demo.finetune --out {out} --resume")
    assert status["status"] == "stopped" and status["signal"] == "SIGINT" and step > n
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == step
    assert read_steps(out / "metrics.jsonl") == list(range(step + 1))
    fd = os.open(out / "lock", os.O_RDWR)  # the lock went with the process
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)


# ------------------------------------------------------------------------- 4. no code from checkpoints
class _Touch:
    """Unpickling this calls open(marker, "w"): the marker file appears if the loader runs code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


class _System:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_resume_never_runs_code_and_malformed_checkpoints_are_one_line(done, tmp_path):
    good = torch.load(done / "checkpoint.pt", weights_only=True)
    folders = {name: copy_run(done, tmp_path / name) for name in ("crafted", "truncated", "wrong", "log", "dir")}
    markers = [tmp_path / "opened", tmp_path / "touched"]
    torch.save(good | {"extra": [_Touch(markers[0]), _System(markers[1])]}, folders["crafted"] / "checkpoint.pt")
    data = (done / "checkpoint.pt").read_bytes()
    (folders["truncated"] / "checkpoint.pt").write_bytes(data[: len(data) // 2])
    torch.save(good | {"step": "4"}, folders["wrong"] / "checkpoint.pt")
    torch.save(good | {"log": good["log"][:2]}, folders["log"] / "checkpoint.pt")
    (folders["dir"] / "checkpoint.pt").unlink()
    (folders["dir"] / "checkpoint.pt").mkdir()
    crafted = subprocess.Popen(CLI + ["--out", str(folders["crafted"]), "--resume", "--quiet"], cwd=ROOT, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    procs = dict(zip(list(folders)[1:], cli_batch(*[["--out", f, "--resume", "--quiet"]
                                                   for f in list(folders.values())[1:]])))
    out, err = crafted.communicate(timeout=120)
    procs["crafted"] = subprocess.CompletedProcess(crafted.args, crafted.returncode, out, err)

    assert not markers[0].exists() and not markers[1].exists()
    ckpt = {name: f / "checkpoint.pt" for name, f in folders.items()}
    again = "start the run again with --overwrite, or choose another --out"
    assert one_line(procs["crafted"]) == (f"error: {ckpt['crafted']}: refused: the checkpoint holds objects other "
                                          f"than tensors and plain values, and loading it could run code; {again}")
    assert one_line(procs["truncated"]).startswith(f"error: {ckpt['truncated']}: not a readable checkpoint (")
    assert one_line(procs["wrong"]) == (f"error: {ckpt['wrong']}: malformed checkpoint (step '4'; allowed: an "
                                        f"integer from 0 to 4); {again}")
    assert one_line(procs["log"]) == f"error: {ckpt['log']}: malformed checkpoint (2 log entries for 4 steps); {again}"
    assert one_line(procs["dir"]).startswith(f"error: {ckpt['dir']}: not a readable checkpoint (IsADirectoryError")


# ------------------------------------------------------------------------- 12. records, memory, one-line errors
def test_resume_keeps_every_good_record_up_to_the_checkpoint(tiny_model, tiny_task, tmp_path, comparable):
    from llm_demo.finetune import Trainer

    out = tmp_path / "run"
    config = cfg(tiny_model, tiny_task, steps=12, checkpoint_every=6)
    run(config, out, progress=False)
    whole = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    trainer = Trainer(config, out)  # rewind the checkpoint to step 6, as if killed after it
    list(trainer.records(lambda: trainer.step >= 6))
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 6
    lines = (out / "metrics.jsonl").read_text().splitlines()
    lines[2] = lines[2][:17] + "#garbage"  # step 2, torn in the middle of the file
    lines[4] = "[]"  # step 4
    (out / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    proc, = cli_many(["--out", out, "--resume", "--quiet"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == (f"warning: {out / 'metrics.jsonl'}: kept 5 records up to the checkpoint (step 6); "
                                   "skipped unreadable line(s) 3, 5; no record is left for step(s) 2, 4")
    resumed = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in resumed] == [0, 1, 3, 5, 6, 7, 8, 9, 10, 11, 12]
    assert comparable(resumed) == comparable(r for r in whole if r["step"] not in (2, 4))


def test_truncate_metrics_drops_out_of_order_and_over_long_lines(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("\n".join([_rec(0), _rec(1), _rec(1), "x" * (3 << 20), _rec(2), _rec(3), _rec(4)]) + "\n"
                    + _rec(5)[:7])
    repair = truncate_metrics(path, 3)
    assert read_steps(path) == [0, 1, 2, 3]
    assert repair.kept == 4 and repair.bad_lines == [3, 4] and repair.missing_steps == []


def test_a_huge_text_is_refused_unread_and_memory_stays_bounded(tiny_model, tmp_path):
    data = tmp_path / "huge.jsonl"
    data.write_text(json.dumps({"text": "a good film " * 900_000, "label": 1}) + "\n")  # 10.8 MB on one line
    proc = subprocess.run([sys.executable, "-c", RSS_WRAPPER, *CLI, "--model", str(tiny_model), "--data", str(data),
                           "--out", str(tmp_path / "run"), "--quiet"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    peak = int(proc.stdout.strip().splitlines()[-1])
    assert one_line(proc) == (f"error: {data} line 1: longer than 160,000 characters; a line may hold one example "
                              "whose text has at most 20,000 characters.")
    assert peak < 900e6, f"peak resident memory {peak / 1e6:.0f} MB"


def test_cli_usage_errors_are_one_line(done, tiny_model, tiny_task, tmp_path):
    broken = tmp_path / "broken-model"
    shutil.copytree(tiny_model, broken)
    weights = broken / "model.safetensors"
    os.truncate(weights, weights.stat().st_size // 2)
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    unknown = copy_run(done, tmp_path / "unknown-key")
    saved = json.loads((unknown / "config.json").read_text())
    (unknown / "config.json").write_text(json.dumps(saved | {"colour": "red"}))
    notjson = copy_run(done, tmp_path / "not-json")
    (notjson / "config.json").write_text("{'optimizer': 'mezo'")
    badtype = copy_run(done, tmp_path / "bad-type")
    (badtype / "config.json").write_text(json.dumps(saved | {"hyper": ["lr", 1]}))
    base = ["--model", tiny_model, "--data", tiny_task, "--quiet"]
    probes = {
        "seed": (base + ["--seed", str(2**64), "--out", tmp_path / "s"],
                 "error: invalid seed=18446744073709551616; allowed: an integer from 0 to 9223372036854775807"),
        "safetensors": (["--model", broken, "--data", tiny_task, "--quiet", "--out", tmp_path / "t"],
                        f"error: {broken}: cannot load a causal LM and tokenizer from this folder (SafetensorError: "),
        "threads": (base + ["--threads", str(10**9), "--out", tmp_path / "d"],
                    "error: invalid threads=1000000000; allowed: an integer from 0 to 1024"),
        "device": (base + ["--device", "cuda:abc", "--out", tmp_path / "d"],
                   "error: invalid device='cuda:abc'; allowed: 'auto', 'cpu', 'cuda' or 'cuda:N' (N the index of a "
                   "CUDA device)"),
        "out-file": (base + ["--out", a_file],
                     f"error: --out {a_file}: this is a file; --out must be a folder (it is created if missing)"),
        "out-under-file": (base + ["--out", a_file / "run"],
                           f"error: --out {a_file / 'run'}: cannot create the run folder or write in it (Not a "
                           "directory); choose a folder you can write to"),
        "out-proc": (base + ["--out", "/proc/adamezo-run"],
                     "error: --out /proc/adamezo-run: cannot create the run folder or write in it"),
        "unknown-key": (["--out", unknown, "--resume", "--quiet"],
                        f"error: {unknown / 'config.json'}: unknown setting 'colour'; allowed: optimizer, steps, "
                        "hyper, model, data, device, dtype, seed, batch_size, eval_every, eval_examples, "
                        "checkpoint_every, max_length, threads"),
        "not-json": (["--out", notjson, "--resume", "--quiet"],
                     f"error: {notjson / 'config.json'}: not a readable run configuration (JSONDecodeError: "),
        "bad-type": (["--out", badtype, "--resume", "--quiet"],
                     f"error: {badtype / 'config.json'}: invalid hyper=['lr', 1]; allowed: an object of "
                     "hyperparameter values"),
        "resume-flags": (["--out", done, "--resume", "--quiet", "--steps", "9", "--lr", "1"],
                         "error: --resume continues the run with the settings saved in its config.json, so --steps, "
                         "--lr cannot be given with it"),
    }
    if not torch.cuda.is_available():
        probes["no-cuda"] = (base + ["--device", "cuda:1", "--out", tmp_path / "c"],
                             "error: device 'cuda:1' was asked for, but CUDA is not available here; use --device cpu "
                             "or auto")
    other = tmp_path / "other"  # a checkpoint of another run, copied into this one
    run(cfg(tiny_model, tiny_task, optimizer="adamezo", steps=6, hyper={"horizon": 3}), other, progress=False)
    mixed = copy_run(done, tmp_path / "mixed")
    shutil.copy(other / "checkpoint.pt", mixed / "checkpoint.pt")
    mixed_metrics = (mixed / "metrics.jsonl").read_text()
    probes["another-run"] = (["--out", mixed, "--resume", "--quiet"],
                             f"error: {mixed / 'checkpoint.pt'}: this checkpoint belongs to another run (its settings "
                             "differ in: optimizer, steps, hyper), so it cannot be resumed with this folder's "
                             "config.json; start the run again with --overwrite, or choose another --out")
    used = copy_run(done, tmp_path / "used")
    before = {p.name: p.read_bytes() for p in used.iterdir()}
    probes["used"] = (base + ["--out", used, "--optimizer", "adamezo"],
                      f"error: --out {used}: this folder already holds a run (checkpoint.pt, config.json, "
                      "metrics.jsonl, pid, ...); pass --resume to continue it, --overwrite to replace it, or choose "
                      "another --out")
    probes["typo"] = (base + ["--model", tmp_path / "nope", "--out", tmp_path / "typo"],
                      f"error: {tmp_path / 'nope'}: no such model folder.")
    results = dict(zip(probes, cli_batch(*[argv for argv, _ in probes.values()])))
    for name, (_, expected) in probes.items():
        assert one_line(results[name]).startswith(expected), name
    assert not (tmp_path / "s").exists() and not (tmp_path / "d").exists()
    assert {p.name: p.read_bytes() for p in used.iterdir() if p.name != "lock"} == before  # untouched
    assert (mixed / "metrics.jsonl").read_text() == mixed_metrics
    assert json.loads((mixed / "status.json").read_text())["status"] == "failed"
    # a new run that cannot load its model writes nothing: the corrected command runs into the folder
    assert sorted(p.name for p in (tmp_path / "typo").iterdir()) == ["lock"]


# ------------------------------------------------------------------------- 5. concurrent starts, stops
@pytest.fixture
def root(tmp_path):
    """A runs folder whose run processes are all killed at the end of the test, whatever happened."""
    root = tmp_path / "runs"
    yield root
    for info in runs.list_runs(root):
        if info.pid and runs._alive(info.pid):
            os.kill(info.pid, signal.SIGKILL)


def test_concurrent_starts_never_exceed_the_limit_and_kill_9_frees_a_slot(tiny_model, tiny_task, root):
    kw = {"model": str(tiny_model), "data": str(tiny_task), "runs_dir": root, "device": "cpu", "steps": 10**6,
          "eval_every": 10**6, "batch_size": 2}
    limit_msg = "2 runs are already running on the CPU (the limit is 2); wait for one to finish or stop one first"
    # six threads of one server at once
    barrier, results = threading.Barrier(6), [None] * 6

    def start(i):
        barrier.wait()
        try:
            results[i] = runs.start_run("mezo", name=f"thread{i}", **kw)
        except ValueError as e:
            results[i] = e

    threads = [threading.Thread(target=start, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    started = [r for r in results if isinstance(r, runs.RunInfo)]
    assert len(started) == 2, results
    assert [str(r) for r in results if isinstance(r, ValueError)] == [limit_msg] * 4
    assert runs.slots_in_use(root, "cpu", 2) == 2
    for r in started:
        os.kill(r.pid, signal.SIGKILL)
    wait_for(lambda: runs.slots_in_use(root, "cpu", 2) == 0)

    # four server processes at once (default names: two starts in the same second get distinct folders)
    go = time.time() + 4
    script = textwrap.dedent(f"""
        import json, sys, time
        from llm_demo import runs
        kw = json.loads(sys.argv[1])
        time.sleep(max(0.0, {go!r} - time.time()))
        try:
            print(runs.start_run("mezo", **kw).pid)
        except ValueError as e:
            print("refused:", e)
    """)
    starters = [subprocess.Popen([sys.executable, "-c", script, json.dumps(kw | {"runs_dir": str(root)})], cwd=ROOT,
                                 stdout=subprocess.PIPE, text=True) for _ in range(4)]
    outs = [p.communicate(timeout=60)[0].strip() for p in starters]
    pids = [int(o) for o in outs if o.isdigit()]
    assert len(pids) == 2, outs
    assert sorted(o for o in outs if not o.isdigit()) == [f"refused: {limit_msg}"] * 2
    names = [r.name for r in runs.list_runs(root) if r.pid in pids]
    assert len(set(names)) == 2
    os.kill(pids[0], signal.SIGKILL)  # a slot is freed by the kernel, whatever killed the run
    wait_for(lambda: runs.slots_in_use(root, "cpu", 2) == 1)
    third = runs.start_run("mezo", name="after-kill", **kw)
    assert third.status == "running" and runs.slots_in_use(root, "cpu", 2) == 2
    with pytest.raises(ValueError, match="the limit is 2"):
        runs.start_run("mezo", name="one-too-many", **kw)


def test_cuda_runs_have_a_limit_per_device(tmp_path, tiny_model, tiny_task):
    assert runs.device_slot("cpu") == ("cpu", 2)
    assert runs.device_slot("cuda:1") == ("cuda1", 2) and runs.device_slot("cuda:0")[0] == "cuda0"
    held = [runs.acquire_slot(tmp_path, "cuda0", 2) for _ in range(2)]
    assert all(isinstance(fd, int) for fd in held)
    assert runs.acquire_slot(tmp_path, "cuda0", 2, tries=1) is None
    assert runs.slots_in_use(tmp_path, "cuda0", 2) == 2 and runs.slots_in_use(tmp_path, "cuda1", 2) == 0
    fd = runs.acquire_slot(tmp_path, "cuda1", 2)  # another device, its own slots
    assert fd is not None
    os.close(held.pop())
    again = runs.acquire_slot(tmp_path, "cuda0", 2)
    assert again is not None
    for x in held + [fd, again]:
        os.close(x)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"device 'cuda' was asked for, but CUDA is not available here"):
            runs.start_run("mezo", steps=5, device="cuda", model=str(tiny_model), data=str(tiny_task),
                           runs_dir=tmp_path)


def test_only_the_starting_session_stops_a_run_and_only_its_own_process(tiny_model, tiny_task, root):
    kw = {"model": str(tiny_model), "data": str(tiny_task), "runs_dir": root, "device": "cpu", "batch_size": 2,
          "eval_every": 10**6}
    r = runs.start_run("mezo", steps=10**6, name="mine", **kw)
    assert isinstance(r.token, str) and len(r.token) >= 32
    assert (r.path / "owner").read_text() != r.token  # only its hash is stored
    wait_for(lambda: len(runs.read_records(r.path).records) > 2)
    for guess in ("", "guess", None, (r.path / "owner").read_text()):
        with pytest.raises(ValueError, match="run 'mine' can only be stopped by the session that started it"):
            runs.stop_run(r.path, guess)
    # a folder that names this run's pid (or any pid) does not get it signalled
    forged = root / "forged"
    forged.mkdir()
    (forged / "config.json").write_text((r.path / "config.json").read_text())
    (forged / "owner").write_text(runs._token_digest("known"))
    (forged / "pid").write_text(str(r.pid))
    assert runs.stop_run(forged, "known") is False
    n = len(runs.read_records(r.path).records)
    wait_for(lambda: len(runs.read_records(r.path).records) > n + 2)
    assert runs.run_info(r.path).status == "running"
    assert runs.stop_run(r.path, r.token) is True
    info = wait_for(lambda: (i := runs.run_info(r.path)).status != "running" and i)
    assert info.status == "stopped" and (r.path / "checkpoint.pt").exists()


# ------------------------------------------------------------------------- 6. the page's record reader
def test_read_records_skips_bad_lines_and_restarts_on_a_rewritten_file(tmp_path):
    path = tmp_path / "metrics.jsonl"
    lines = [_rec(s) for s in range(5)] + ["{not json", _rec(5), "[1, 2]", '{"step": "x"}', "\xff\xfe", _rec(6)]
    path.write_text("\n".join(lines) + "\n" + _rec(7)[:10])  # the last line is still being written
    got = runs.read_records(tmp_path)
    assert [r["step"] for r in got.records] == [0, 1, 2, 3, 4, 5, 6] and got.skipped == 4 and not got.restarted
    assert got.cursor.offset == path.read_bytes().rindex(b"\n") + 1
    with open(path, "a") as f:
        f.write(_rec(7)[10:] + "\n")
    more = runs.read_records(tmp_path, got.cursor)
    assert [r["step"] for r in more.records] == [7] and not more.restarted

    # a resume rewrites the file shorter (new inode), then it regrows past the reader's offset
    tmp = tmp_path / "metrics.jsonl.tmp"
    tmp.write_text("\n".join(_rec(s, loss=0.25) for s in range(3)) + "\n")
    os.replace(tmp, path)
    with open(path, "a") as f:
        f.write("".join(_rec(s, loss=0.25) + "\n" for s in range(3, 30)))
    assert path.stat().st_size > more.cursor.offset
    again = runs.read_records(tmp_path, more.cursor)
    assert again.restarted and [r["step"] for r in again.records] == list(range(30))
    assert {r["train_loss"] for r in again.records} == {0.25}

    # the same file cut in place (same inode), shorter than the offset, or regrown with other content
    path.write_text(_rec(0) + "\n")
    cut = runs.read_records(tmp_path, again.cursor)
    assert cut.restarted and [r["step"] for r in cut.records] == [0]
    path.write_text("".join(_rec(s, loss=0.125) + "\n" for s in range(40)))
    regrown = runs.read_records(tmp_path, again.cursor)
    assert regrown.restarted and len(regrown.records) == 40
    path.unlink()
    gone = runs.read_records(tmp_path, regrown.cursor)
    assert gone == ([], runs.Cursor(), True, 0)


def test_run_info_survives_hostile_run_files(tmp_path):
    d = tmp_path / "odd"
    d.mkdir()
    (d / "started").touch()
    (d / "config.json").write_text('["not", "an", "object"]')
    (d / "status.json").write_text("42")
    (d / "pid").write_text("-1")
    info = runs.run_info(d)
    assert info.config == {} and info.pid is None and info.steps == 0 and info.progress == 0.0
    (d / "config.json").write_text('{"steps": "many", "device": 7}')
    (d / "status.json").write_text('{"status": {"x": 1}, "error": 7}')
    info = runs.run_info(d)
    assert info.steps == 0 and info.status == "running" and info.error == "7"
    assert runs.count_running(tmp_path, "cpu") == 1
    assert [r.name for r in runs.list_runs(tmp_path)] == ["odd"]


def test_a_run_process_is_recognised_by_its_own_folder_only(tmp_path):
    """``--out=DIR`` and argparse's prefix ``--ou DIR`` name the folder too; a relative one is read from the
    process's working directory. (A sleeper with a fine-tune's arguments stands in for one.)"""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for args in (["--out", "a"], ["--out=a"], ["--ou", "a"], ["--quiet", "--ou=./a"]):
        proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "llm_demo.finetune", *args],
                                cwd=tmp_path)
        try:
            wait_for(lambda: b"llm_demo.finetune" in Path(f"/proc/{proc.pid}/cmdline").read_bytes(), 10)
            assert runs._alive(proc.pid, tmp_path / "a") and runs._alive(proc.pid)
            assert not runs._alive(proc.pid, tmp_path / "b") and not runs._alive(os.getpid(), tmp_path / "a")
            (tmp_path / "a" / "pid").write_text(str(proc.pid))
            (tmp_path / "b" / "pid").write_text(str(proc.pid))
            assert runs.run_info(tmp_path / "a").status == "running"
            assert runs.run_info(tmp_path / "b").status == "failed"
        finally:
            proc.kill()
            proc.wait()


# ------------------------------------------------------------------------- 8. paths from a link
def test_app_paths_are_the_bundled_assets_and_the_operators_roots(tmp_path):
    from llm_demo import paths

    allowed, secret = tmp_path / "models", tmp_path / "secret"
    (allowed / "m").mkdir(parents=True)
    secret.mkdir()
    (allowed / "escape").symlink_to(secret)
    (allowed / "etc").symlink_to("/etc")
    env = {"ADAMEZO_MODEL_ROOTS": f"{allowed}{os.pathsep}{os.pathsep}{tmp_path / 'missing-root'}"}
    roots = paths.app_roots("model", env)
    assert roots == [BUNDLED_MODEL.resolve(), allowed.resolve(), (tmp_path / "missing-root").resolve()]
    assert paths.app_roots("data", {}) == [BUNDLED_GRADED.resolve(), BUNDLED_TASK.resolve()]  # every bundled task
    assert paths.check_app_path("", "model", roots) is None
    assert paths.check_app_path(str(BUNDLED_MODEL), "model", roots) == BUNDLED_MODEL.resolve()
    assert paths.check_app_path(str(allowed / "m"), "model", roots) == (allowed / "m").resolve()
    assert paths.check_app_path(str(allowed / "not-yet"), "model", roots) == (allowed / "not-yet").resolve()
    refused = ["/etc", "/etc/passwd", "/no/such/dir", str(allowed / ".." / "secret"), str(allowed / "escape"),
               str(allowed / "etc" / "passwd"), str(allowed) + "-sibling", "bad\x00path", str(BUNDLED_TASK)]
    messages = set()
    for text in refused:
        with pytest.raises(ValueError) as e:
            paths.check_app_path(text, "model", roots)
        messages.add(str(e.value))
        assert "passwd" not in str(e.value) and "secret" not in str(e.value)
    assert messages == {f"this model folder is not one the app may read; allowed: empty for the bundled one, or a path "
                        f"under the folders in the server's ADAMEZO_MODEL_ROOTS setting ({allowed.resolve()}, "
                        f"{(tmp_path / 'missing-root').resolve()})"}
    with pytest.raises(ValueError, match=r"task file or folder is not one the app may read.*none are listed"):
        paths.check_app_path("/etc/passwd", "data", paths.app_roots("data", {}))
