"""Data parallel ``llm_demo.finetune`` under torchrun (2 gloo processes on the CPU) equals one process with
the same global batch: records (train loss, forward passes, evaluation, test) and final weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from llm_demo import distributed
from llm_demo.finetune import CHECKPOINT, METRICS, RunConfig, Trainer, load_checkpoint, read_config, run

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")

REPO = Path(__file__).resolve().parents[2]
COMPARED = ("train_loss", "eval_loss", "eval_accuracy", "test_loss", "test_accuracy")


def torchrun(args: list[str], n: int = 2, timeout: float = 300) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(n),
           "-m", "llm_demo.finetune", *args]
    env = {k: v for k, v in os.environ.items() if k not in distributed.ENV}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / METRICS).read_text().splitlines()]


def final_weights(run_dir: Path) -> torch.Tensor:
    """The run's final weights, from its checkpoint (a ZO log replayed, or Adam's saved weights)."""
    config = read_config(run_dir)
    trainer = Trainer(config)
    trainer.restore(load_checkpoint(run_dir / CHECKPOINT, config))
    return torch.cat([p.detach().reshape(-1) for p in trainer.model.parameters()])


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["mezo", "adamezo", "hizoo", "adam"])
def test_two_processes_equal_one_process(optimizer, tiny_model, tiny_task, tmp_path):
    steps = 3
    hyper = {"lr": 1e-2, "horizon": 2} if optimizer == "adamezo" else {"lr": 1e-2}
    if optimizer == "hizoo":
        hyper["hessian_smooth"] = 1e-3
    config = RunConfig(optimizer=optimizer, steps=steps, hyper=hyper, model=str(tiny_model), data=str(tiny_task),
                       device="cpu", batch_size=16, eval_every=2, checkpoint_every=steps)
    one = tmp_path / "one"
    run(config, one, progress=False)
    two = tmp_path / "two"
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in hyper.items()]
    done = torchrun(["--optimizer", optimizer, "--steps", str(steps), "--model", str(tiny_model), "--data",
                     str(tiny_task), "--device", "cpu", "--batch-size", "16", "--eval-every", "2",
                     "--checkpoint-every", str(steps), "--out", str(two), "--quiet", *flags])
    assert done.returncode == 0, done.stderr[-3000:]
    assert read_config(two).processes == 2
    assert done.stdout.count('"step": 3') == 1  # rank 0 alone prints the summary
    a, b = records(one), records(two)
    assert [r["step"] for r in b] == [r["step"] for r in a] == list(range(steps + 1))
    for ra, rb in zip(a, b):
        assert rb["forward_passes"] == ra["forward_passes"]
        assert set(k for k in COMPARED if k in ra) == set(k for k in COMPARED if k in rb)
        for key in COMPARED:
            if key in ra:
                assert rb[key] == pytest.approx(ra[key], rel=1e-6, abs=0), (rb["step"], key)
    assert "test_accuracy" in b[-1] and "eval_loss" in b[2]
    wa, wb = final_weights(one), final_weights(two)
    start = torch.cat([p.detach().reshape(-1) for p in Trainer(config).model.parameters()])
    assert (wa - start).abs().max() > 1e-4  # the run moved the weights
    if optimizer != "adam":
        torch.testing.assert_close(wb, wa, rtol=1e-6, atol=1e-7)
        return
    # Adam: DDP sums the ranks' gradients in another order than one backward over the whole batch. Where a
    # gradient is near zero (embedding rows of tokens that barely occur), Adam's m/sqrt(v) turns that round-off
    # into a visible step (measured: 57 of 12,960 weights off by up to 1.1e-5 after 3 steps at lr 1e-2).
    close = torch.isclose(wb, wa, rtol=1e-6, atol=1e-7)
    assert close.float().mean() > 0.99
    assert (wb - wa).abs().max() < 1e-4


def test_batch_must_split_evenly_and_processes_must_match(tiny_model, tiny_task, tmp_path):
    base = ["--optimizer", "mezo", "--steps", "1", "--model", str(tiny_model), "--data", str(tiny_task),
            "--device", "cpu", "--quiet"]
    done = torchrun([*base, "--batch-size", "15", "--out", str(tmp_path / "odd")])
    assert done.returncode != 0
    assert "batch_size=15 cannot be split evenly over 2 processes; allowed: a multiple of 2" in done.stderr
    with pytest.raises(ValueError, match=r"set for processes=2, but 1 process was started; start it with "
                                         r"torchrun --standalone --nproc-per-node 2"):
        distributed.setup(2, 16, torch.device("cpu"))
    assert distributed.setup(1, 16, torch.device("cpu")) is None


def test_local_slice_is_the_ranks_contiguous_rows(monkeypatch):
    batch = {"input_ids": torch.arange(32).reshape(8, 4), "attention_mask": torch.ones(8, 4, dtype=torch.long),
             "labels": torch.arange(8), "verbalizer_ids": torch.tensor([5, 6])}
    assert distributed.local_slice(batch) is batch
    monkeypatch.setattr(distributed, "_GROUP", distributed.Group(1, 2, 1, "gloo", torch.device("cpu")))
    part = distributed.local_slice(batch)
    assert part["labels"].tolist() == [4, 5, 6, 7]
    assert part["input_ids"].shape == (4, 4) and part["input_ids"][0].tolist() == [16, 17, 18, 19]
    assert part["verbalizer_ids"].tolist() == [5, 6]


# ------------------------------------------------------------------------------------- launching from runs.py
def test_processes_are_validated_with_what_is_allowed():
    from llm_demo import runs

    assert runs.check_processes(2, "cpu", 16) == 2
    for bad in (0, 3, True, "2", 1.0):
        with pytest.raises(ValueError, match=r"invalid processes=.*; allowed: an integer from 1 to 2 on the CPU"):
            runs.check_processes(bad, "cpu", 16)
    with pytest.raises(ValueError, match="batch size 15 cannot be split evenly over 2 processes; allowed: a multiple of 2"):
        runs.check_processes(2, "cpu", 15)


def test_the_launch_command_and_the_slots_of_a_two_process_run(tiny_model, tiny_task, tmp_path, monkeypatch):
    from llm_demo import runs

    assert runs.launch_command(Path("runs/x")) == [sys.executable, "-m", "llm_demo.finetune", "--out", "runs/x",
                                                   "--resume", "--quiet"]
    assert runs.launch_command(Path("runs/x"), 2) == [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        "-m", "llm_demo.finetune", "--out", "runs/x", "--resume", "--quiet"]
    launched = []

    class FakePopen:  # records what would start; holds the slots' descriptors as the child would
        def __init__(self, cmd, **kw):
            self.pid = os.getpid()
            self.fds = [os.dup(fd) for fd in kw["pass_fds"]]
            launched.append((cmd, kw["env"], self))

    monkeypatch.setattr(runs.subprocess, "Popen", FakePopen)
    kw = {"model": str(tiny_model), "data": str(tiny_task), "runs_dir": tmp_path, "device": "cpu", "steps": 5}
    with pytest.raises(ValueError, match="allowed: an integer from 1 to 2 on the CPU"):
        runs.start_run("mezo", processes=3, **kw)
    info = runs.start_run("mezo", processes=2, **kw)
    cmd, env, proc = launched[-1]
    assert cmd[1:7] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m"]
    assert runs.SLOT_FD_ENV not in env  # torchrun's workers do not inherit the slots
    assert json.loads((info.path / "config.json").read_text())["processes"] == 2
    assert runs.slots_in_use(tmp_path, "cpu", 2) == 2  # both CPU slots
    with pytest.raises(ValueError, match="2 runs are already running on the CPU"):
        runs.start_run("mezo", name="another", **kw)
    with pytest.raises(ValueError, match="a run of 2 processes needs 2 free run slots on the CPU"):
        runs.start_run("mezo", name="third", processes=2, **kw)
    for fd in proc.fds:  # the "process" ends: its slots are free
        os.close(fd)
    assert runs.slots_in_use(tmp_path, "cpu", 2) == 0
    one = runs.start_run("mezo", name="single", **kw)
    assert launched[-1][0][1:3] == ["-m", "llm_demo.finetune"] and runs.SLOT_FD_ENV in launched[-1][1]
    assert runs.slots_in_use(tmp_path, "cpu", 2) == 1
    with pytest.raises(ValueError, match="a run of 2 processes needs 2 free run slots"):
        runs.start_run("mezo", name="pair", processes=2, **kw)
    assert runs.slots_in_use(tmp_path, "cpu", 2) == 1  # all or nothing: the free slot was not kept
    for fd in launched[-1][2].fds:
        os.close(fd)
    assert one.name == "single"


@pytest.mark.slow
def test_a_stopped_two_process_run_resumes_to_the_records_of_an_uninterrupted_one(tiny_model, tiny_task, tmp_path):
    import signal
    import time

    steps = 120
    common = ["--optimizer", "adamezo", "--steps", str(steps), "--model", str(tiny_model), "--data", str(tiny_task),
              "--device", "cpu", "--batch-size", "16", "--eval-every", "40", "--checkpoint-every", "7", "--lr", "1e-2"]
    one = tmp_path / "one"
    run(RunConfig(optimizer="adamezo", steps=steps, hyper={"lr": 1e-2}, model=str(tiny_model), data=str(tiny_task),
                  device="cpu", batch_size=16, eval_every=40, checkpoint_every=7), one, progress=False)
    two = tmp_path / "two"
    env = {k: v for k, v in os.environ.items() if k not in distributed.ENV}
    proc = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                             "-m", "llm_demo.finetune", *common, "--out", str(two), "--quiet"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:  # stop rank 0 (the pid in the folder) once a few steps are done
        metrics = two / METRICS
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 4 and (two / "pid").exists():
            os.kill(int((two / "pid").read_text()), signal.SIGTERM)
            break
        time.sleep(0.02)
    proc.communicate(timeout=120)
    status = json.loads((two / "status.json").read_text())
    assert status["status"] == "stopped" and 3 <= status["step"] < steps, status
    done = torchrun(["--out", str(two), "--resume", "--quiet"])
    assert done.returncode == 0, done.stderr[-3000:]
    a, b = records(one), records(two)
    assert [r["step"] for r in b] == list(range(steps + 1))
    for ra, rb in zip(a, b):
        assert rb["forward_passes"] == ra["forward_passes"]
        for key in COMPARED:
            assert (key in ra) == (key in rb)
            if key in ra:
                assert rb[key] == pytest.approx(ra[key], rel=1e-6, abs=0), (rb["step"], key)
    torch.testing.assert_close(final_weights(two), final_weights(one), rtol=1e-6, atol=1e-7)
