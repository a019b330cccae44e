"""The training loop, its command line, checkpoints and resume after kill -9, and the runs module."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llm_demo import runs
from llm_demo.finetune import RunConfig, Trainer, main, run, train


def config(tiny_model, tiny_task, **kw):
    return RunConfig(**({"optimizer": "adamezo", "steps": 6, "eval_every": 3, "batch_size": 8,
                         "model": str(tiny_model), "data": str(tiny_task)} | kw))


def test_records_follow_the_contract(tiny_model, tiny_task):
    records = list(train(config(tiny_model, tiny_task, hyper={"horizon": 4})))
    assert [r["step"] for r in records] == list(range(7))
    for r in records:
        assert r["forward_passes"] == 2 * r["step"]
        assert r["optimizer_state_bytes"] == 16 * min(r["step"], 4)
        assert r["peak_memory_bytes"] > 10_000_000
        assert isinstance(r["train_loss"], float)
    assert [r["step"] for r in records if "eval_accuracy" in r] == [0, 3, 6]
    assert all(0 <= r["eval_accuracy"] <= 1 for r in records if "eval_accuracy" in r)
    assert "test_accuracy" in records[-1] and "test_accuracy" not in records[-2]
    assert records[-1]["wall_time_s"] >= records[1]["wall_time_s"] > 0


def test_first_order_records(tiny_model, tiny_task):
    records = list(train(config(tiny_model, tiny_task, optimizer="adam", steps=3)))
    assert [r["forward_passes"] for r in records] == [0, 1, 2, 3]
    n_params = 16 * 400 + 130 * 16 + 2 * (4 * (16 * 16 + 16) + 2 * 16 * 32 + 32 + 16 + 4 * 16) + 2 * 16
    assert records[-1]["optimizer_state_bytes"] >= 2 * 4 * n_params


def test_should_stop_ends_training_after_the_current_step(tiny_model, tiny_task):
    trainer = Trainer(config(tiny_model, tiny_task, steps=50, eval_every=100))
    asked = []
    records = list(trainer.records(lambda: asked.append(trainer.step) or len(asked) > 3))
    assert [r["step"] for r in records] == [0, 1, 2, 3]
    assert asked == [0, 1, 2, 3] and trainer.step == 3
    more = list(trainer.records(lambda: trainer.step >= 5))  # and it carries on from there
    assert [r["step"] for r in more] == [4, 5]


def read(path):
    return [json.loads(x) for x in Path(path).read_text().splitlines()]


@pytest.mark.parametrize("optimizer,mode", [("adamezo", "replay"), ("adam", "weights")])
def test_resume_after_kill_9_matches_an_uninterrupted_run(tiny_model, tiny_task, tmp_path, optimizer, mode,
                                                          comparable):
    steps = 400
    cmd = [sys.executable, "-m", "llm_demo.finetune", "--optimizer", optimizer, "--steps", str(steps),
           "--checkpoint-every", "30", "--eval-every", "100", "--batch-size", "8", "--model", str(tiny_model),
           "--data", str(tiny_task), "--out", str(tmp_path / "killed"), "--quiet", "--lr", "1e-3"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    metrics = tmp_path / "killed" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline:
        if metrics.exists() and metrics.read_text().count("\n") >= 100:
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    lines_at_kill = metrics.read_text().count("\n")
    assert 100 <= lines_at_kill < steps + 1, "the run must be killed mid-way"
    import torch

    ckpt = torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=True)
    assert ckpt["mode"] == mode and ckpt["step"] % 30 == 0 and ckpt["step"] < steps

    resumed = subprocess.run(cmd[:3] + ["--out", str(tmp_path / "killed"), "--resume", "--quiet"],
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr

    cfg = RunConfig(**json.loads((tmp_path / "killed" / "config.json").read_text()))
    run(cfg, tmp_path / "whole", progress=False)
    assert comparable(read(metrics)) == comparable(read(tmp_path / "whole" / "metrics.jsonl"))
    assert json.loads((tmp_path / "killed" / "status.json").read_text())["status"] == "finished"


def test_cli_errors_are_one_clear_sentence(tiny_model, tiny_task, tmp_path, capsys):
    base = ["--out", str(tmp_path / "r"), "--model", str(tiny_model), "--data", str(tiny_task), "--quiet"]
    assert main(["--optimizer", "mezo", "--horizon", "5"] + base) == 2
    assert "MeZO has no hyperparameter 'horizon'; allowed:" in capsys.readouterr().err
    assert main(["--lr", "-1"] + base) == 2
    assert "invalid lr=-1.0 (too small); allowed: a number > 0" in capsys.readouterr().err
    assert main(["--lr", "fast"] + base) == 2
    assert "--lr: 'fast' is not a number > 0" in capsys.readouterr().err
    assert main(["--steps", "0"] + base) == 2
    assert "invalid steps=0; allowed: an integer >= 1" in capsys.readouterr().err
    assert main(base + ["--model", str(tmp_path / "nope")]) == 2
    assert f"{tmp_path / 'nope'}: no such model folder" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine film", "label": 1}\n{"text": "no label"}\n')
    assert main(base + ["--data", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "line 2" in err and "label" in err
    assert main(["--out", str(tmp_path / "none"), "--resume"]) == 2
    assert "no run to resume here" in capsys.readouterr().err


def test_a_local_model_folder_trains_from_the_command_line(tiny_model, tiny_task, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["--optimizer", "mezo", "--steps", "4", "--eval-every", "2", "--batch-size", "4", "--quiet",
                 "--model", str(tiny_model), "--data", str(tiny_task), "--out", str(out), "--seed-budget", "2"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["step"] == 4 and summary["forward_passes"] == 8
    saved = json.loads((out / "config.json").read_text())
    assert saved["hyper"] == {"seed_budget": 2} and saved["model"] == str(tiny_model)


def wait_for(predicate, timeout=90.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out")


@pytest.fixture
def root(tmp_path):
    """A runs folder whose runs are all killed at the end of the test, whatever happened."""
    root = tmp_path / "runs"
    yield root
    for info in runs.list_runs(root):
        if info.pid and info.status == "running":
            os.kill(info.pid, signal.SIGKILL)


def test_runs_start_list_read_stop(tiny_model, tiny_task, root):
    kw = {"model": str(tiny_model), "data": str(tiny_task), "runs_dir": root, "batch_size": 4, "device": "cpu"}
    done = runs.start_run("mezo", steps=5, hyper={"lr": 1e-3}, name="short", eval_every=5, **kw)
    assert done.name == "short" and done.status == "running"
    info = wait_for(lambda: (i := runs.run_info(root / "short")).status != "running" and i)
    assert info.status == "finished", info.error
    records, cursor, restarted, skipped = runs.read_records(root / "short")
    assert [r["step"] for r in records] == list(range(6)) and not restarted and skipped == 0
    assert cursor.offset == (root / "short" / "metrics.jsonl").stat().st_size
    assert runs.read_records(root / "short", cursor) == ([], cursor, False, 0)
    assert info.last == records[-1] and info.progress == 1.0

    wait_for(lambda: runs.slots_in_use(root, "cpu", 2) == 0)  # the short run's process has let go of its slot
    long = [runs.start_run("adamezo", steps=10**6, name=f"long{i}", **kw) for i in range(2)]
    with pytest.raises(ValueError, match=r"2 runs are already running on the CPU \(the limit is 2\)"):
        runs.start_run("mezo", steps=5, name="third", **kw)
    with pytest.raises(ValueError, match=r"a run named 'short' already exists"):
        runs.start_run("mezo", steps=5, name="short", **kw, max_concurrent_cpu=9)
    with pytest.raises(ValueError, match=r"invalid run name"):
        runs.start_run("mezo", steps=5, name="../escape", **kw, max_concurrent_cpu=9)
    assert runs.count_running(root) == 2
    assert [r.name for r in runs.list_runs(root)] == ["long1", "long0", "short"]
    wait_for(lambda: all(len(runs.read_records(r.path)[0]) > 3 for r in long))
    for r in long:
        assert runs.stop_run(r.path, r.token) is True
    for r in long:
        stopped = wait_for(lambda r=r: (i := runs.run_info(r.path)).status != "running" and i)
        assert stopped.status == "stopped"
        assert (r.path / "checkpoint.pt").exists()
    assert runs.count_running(root) == 0


def test_a_killed_run_is_reported_as_failed(tiny_model, tiny_task, root):
    r = runs.start_run("mezo", steps=10**6, name="victim", model=str(tiny_model), data=str(tiny_task),
                       runs_dir=root, device="cpu")
    wait_for(lambda: len(runs.read_records(r.path)[0]) > 1)
    os.kill(r.pid, signal.SIGKILL)
    info = wait_for(lambda: (i := runs.run_info(r.path)).status != "running" and i)
    assert info.status == "failed" and info.error


def test_a_stopped_run_keeps_its_reason_and_resumes_from_the_page(tiny_model, tiny_task, root):
    kw = {"model": str(tiny_model), "data": str(tiny_task), "runs_dir": root, "batch_size": 4, "device": "cpu"}
    r = runs.start_run("mezo", steps=10**6, hyper={"lr": 1e-3}, seed=3, **kw)
    assert r.name == "mezo-lr1e-3-s3" and runs.run_label(r.config) == "MeZO · lr 1e-3 · seed 3"
    assert [runs.fmt_lr(x) for x in (3e-4, 2.5e-4, 1e-5, 0.01, 0.3)] == ["3e-4", "2.5e-4", "1e-5", "0.01", "0.3"]
    assert r.starting and r.reason is None and not r.resumable  # no record yet: the page says "starting…"
    wait_for(lambda: len(runs.read_records(r.path)[0]) > 5)
    assert not runs.run_info(r.path).starting
    with pytest.raises(ValueError, match="run 'mezo-lr1e-3-s3' cannot be resumed: it is running"):
        runs.resume_run(r.path, runs_dir=root)
    runs.stop_run(r.path, r.token)
    stopped = wait_for(lambda: (i := runs.run_info(r.path)).status == "stopped" and i)
    at = stopped.stopped_at
    assert at >= 5 and stopped.reason == (f"asked to stop (the page's Stop button or a kill) at step {at} of "
                                          f"{10**6}; a checkpoint is saved, so it can be resumed")
    assert stopped.resumable and [i.name for i in runs.list_runs(root)] == [r.name]  # still listed after a reload
    again = runs.resume_run(r.path, runs_dir=root)
    assert again.status == "running" and again.starting and again.token != r.token
    wait_for(lambda: (runs.read_records(r.path)[0] or [{}])[-1].get("step", 0) > at + 3)
    with pytest.raises(ValueError, match="can only be stopped by the session that started it"):
        runs.stop_run(r.path, r.token)  # the old token no longer stops it
    runs.stop_run(r.path, again.token)
    final = wait_for(lambda: (i := runs.run_info(r.path)).status == "stopped" and i)
    steps = [x["step"] for x in runs.read_records(r.path)[0]]
    assert final.stopped_at > at + 3 and steps == list(range(final.stopped_at + 1))  # one record a step
    second = runs.start_run("mezo", steps=3, hyper={"lr": 1e-3}, seed=3, **kw)
    assert second.name == "mezo-lr1e-3-s3-2"
