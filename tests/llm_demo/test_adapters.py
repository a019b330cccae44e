"""LoRA through peft (``--peft lora``): what trains, memory and state bytes, checkpoints and resume, errors."""

import json
import os
import signal
import time
from dataclasses import asdict

import pytest
import torch

from llm_demo import adapters, runs
from llm_demo.finetune import (CHECKPOINT, CONFIG, METRICS, RunConfig, Trainer, load_checkpoint, main,
                               read_config, run)
from llm_demo.tasks import BUNDLED_MODEL, load_model

def lora_config(tiny_model, tiny_task, **kw):
    return RunConfig(**({"optimizer": "adamezo", "steps": 8, "eval_every": 4, "checkpoint_every": 3, "batch_size": 8,
                         "model": str(tiny_model), "data": str(tiny_task), "peft": "lora", "hyper": {"lr": 1e-2}}
                        | kw))


def test_linear_module_names_and_unknown_targets_are_refused_with_the_list():
    model, _ = load_model(BUNDLED_MODEL)
    assert adapters.linear_module_names(model) == ["fc1", "fc2", "k_proj", "out_proj", "q_proj", "v_proj"]
    with pytest.raises(ValueError) as e:
        adapters.LoRA(target_modules=("q_proj", "query")).validate(model)
    assert str(e.value) == ("--lora-target-modules: 'query' is not a linear module of this model; allowed: "
                            "fc1, fc2, k_proj, out_proj, q_proj, v_proj (comma-separated)")
    assert adapters.parse_target_modules(" q_proj , fc1") == ("q_proj", "fc1")
    for bad in ("", "q_proj,,v_proj", "q_proj,q_proj", "q.proj"):
        with pytest.raises(ValueError, match="allowed: a comma-separated list of"):
            adapters.parse_target_modules(bad)


@pytest.mark.parametrize("optimizer", ["mezo", "adamezo", "adam", "hizoo"])
def test_only_the_adapters_train_with_any_optimizer(tiny_model, tiny_task, optimizer):
    trainer = Trainer(lora_config(tiny_model, tiny_task, optimizer=optimizer, steps=3, hyper={"lr": 1e-2}))
    frozen = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if not p.requires_grad}
    trainable = {n: p for n, p in trainer.model.named_parameters() if p.requires_grad}
    # r 8 on q_proj and v_proj of 2 layers, hidden 16: 2 * 2 * (8 * 16 + 16 * 8)
    assert sorted({n.split(".")[-3] for n in trainable}) == ["lora_A", "lora_B"] and len(trainable) == 8
    assert sum(p.numel() for p in trainable.values()) == 1024
    in_optimizer = [p for g in trainer.optimizer.param_groups for p in g["params"]]
    assert {id(p) for p in in_optimizer} == {id(p) for p in trainable.values()}
    records = list(trainer.records())
    assert [r["forward_passes"] for r in records] == [trainer.entry.forward_passes() * s if trainer.entry.zeroth_order
                                                      else s for s in range(4)]
    assert all(torch.equal(p, frozen[n]) for n, p in trainer.model.named_parameters() if not p.requires_grad)
    assert any(p.abs().sum() > 0 for n, p in trainable.items() if "lora_B" in n), "B starts at 0 and must move"


def test_weight_decay_groups_still_apply_to_the_adapters(tiny_model, tiny_task):
    trainer = Trainer(lora_config(tiny_model, tiny_task, optimizer="mezo", hyper={"lr": 1e-2, "weight_decay": 0.1}))
    (group,) = trainer.optimizer.param_groups  # the adapters' names contain no "bias" nor "layer_norm"
    assert group["weight_decay"] == 0.1 and sum(p.numel() for p in group["params"]) == 1024


def test_memory_and_state_bytes_show_the_difference_for_adam(tiny_task):
    full = Trainer(RunConfig(optimizer="adam", steps=2, batch_size=8, data=str(tiny_task)))
    lora = Trainer(RunConfig(optimizer="adam", steps=2, batch_size=8, data=str(tiny_task), peft="lora"))
    (f,), (lo,) = ([r for r in t.records() if r["step"] == 2] for t in (full, lora))
    n_full = sum(p.numel() for p in full.model.parameters())
    n_lora = 4 * 2 * (128 * 8 + 8 * 128)  # 4 layers, q_proj and v_proj, r 8, hidden 128
    assert f["memory"]["weights_trainable"] == 4 * n_full and lo["memory"]["weights_trainable"] == 4 * n_lora
    assert f["memory"]["gradients"] == 4 * n_full and lo["memory"]["gradients"] == 4 * n_lora
    # Adam's m and v for every trainable tensor, and torch's 4-byte step counter per tensor
    assert lo["optimizer_state_bytes"] == 2 * 4 * n_lora + 4 * 16
    assert f["optimizer_state_bytes"] == 2 * 4 * n_full + 4 * len(list(full.model.parameters()))
    assert lo["optimizer_state_bytes"] * 50 < f["optimizer_state_bytes"]
    assert lo["memory"]["weights"] == f["memory"]["weights"] + 4 * n_lora  # the frozen weights stay in memory
    assert lo["memory"]["peak_total"] < f["memory"]["peak_total"]


@pytest.mark.parametrize("optimizer", ["adamezo", "adam"])
def test_resume_with_lora_equals_an_uninterrupted_run(tiny_model, tiny_task, tmp_path, optimizer, comparable):
    # Checkpoints every 2 steps: the first step after the resume (5) is not a memory-measured one. (A ZO
    # optimizer restored from weights allocates its block buffers in that step, which the breakdown of a
    # measured step would count as temporaries; the training values are equal either way.)
    cfg = lora_config(tiny_model, tiny_task, optimizer=optimizer, hyper={"lr": 1e-2}, checkpoint_every=2)
    killed = tmp_path / "killed"
    killed.mkdir()
    (killed / CONFIG).write_text(json.dumps(asdict(cfg)))
    trainer = Trainer(cfg, killed)
    with open(killed / METRICS, "w") as out:  # as if killed after step 5: the checkpoint is step 4's
        for record in trainer.records(lambda: trainer.step >= 5):
            out.write(json.dumps(record) + "\n")
    ckpt = load_checkpoint(killed / CHECKPOINT, cfg)
    assert ckpt["mode"] == "weights" and ckpt["step"] == 4
    assert sorted(ckpt["model"]) == sorted(adapters.adapter_state(trainer.peft_model))
    assert all("lora_" in k for k in ckpt["model"]) and len(ckpt["model"]) == 8 and ckpt["optimizer"]
    run(cfg, killed, resume=True, progress=False)
    run(cfg, tmp_path / "whole", progress=False)
    strip = lambda path: comparable(json.loads(x) for x in path.read_text().splitlines())  # noqa: E731
    assert strip(killed / METRICS) == strip(tmp_path / "whole" / METRICS)
    assert len(strip(killed / METRICS)) == 9


def test_a_resume_with_other_lora_settings_is_refused(tiny_model, tiny_task, tmp_path):
    cfg = lora_config(tiny_model, tiny_task, steps=3)
    run(cfg, tmp_path / "r", progress=False)
    for change in ({"lora_r": 4}, {"lora_alpha": 8}, {"lora_target_modules": "q_proj"}, {"peft": "none"}):
        other = RunConfig(**(asdict(cfg) | change))
        with pytest.raises(ValueError, match=f"belongs to another run \\(its settings differ in: {next(iter(change))}"):
            load_checkpoint(tmp_path / "r" / CHECKPOINT, other)


def test_a_lora_checkpoint_is_refused_on_changed_base_weights(tiny_model, tiny_task, tmp_path):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    cfg = lora_config(model, tiny_task, steps=3)
    run(cfg, tmp_path / "r", progress=False)
    ckpt = load_checkpoint(tmp_path / "r" / CHECKPOINT, cfg)
    (model / "config.json").write_text((model / "config.json").read_text() + " ")
    with pytest.raises(ValueError, match="the model files changed since the run started, so its adapter was "
                                         "trained on other weights; start a new run"):
        Trainer(cfg).restore(ckpt)


def test_older_full_runs_keep_their_config_hash():
    from llm_demo.finetune import config_hash

    old = {k: v for k, v in asdict(RunConfig()).items() if k not in ("peft", "lora_r", "lora_alpha",
                                                                        "lora_target_modules")}
    assert config_hash(RunConfig()) == config_hash(old)


def test_cli_lora_flags_and_their_errors(tiny_model, tiny_task, tmp_path, capsys):
    base = ["--out", str(tmp_path / "r"), "--model", str(tiny_model), "--data", str(tiny_task), "--quiet",
            "--optimizer", "mezo", "--steps", "2", "--batch-size", "4"]
    assert main(base + ["--peft", "lora", "--lora-target-modules", "q_proj,foo"]) == 2
    assert ("--lora-target-modules: 'foo' is not a linear module of this model; allowed: fc1, fc2, k_proj, "
            "out_proj, q_proj, v_proj (comma-separated)") in capsys.readouterr().err
    assert main(base + ["--peft", "lora", "--lora-r", "0"]) == 2
    assert "invalid lora_r=0; allowed: an integer from 1 to 1024" in capsys.readouterr().err
    assert main(base + ["--lora-r", "4"]) == 2
    assert "--lora-r set without --peft lora" in capsys.readouterr().err
    assert not (tmp_path / "r" / CONFIG).exists()
    assert main(base + ["--peft", "lora", "--lora-r", "4", "--lora-alpha", "8", "--lora-target-modules", "fc1"]) == 0
    saved = json.loads((tmp_path / "r" / CONFIG).read_text())
    assert (saved["peft"], saved["lora_r"], saved["lora_alpha"], saved["lora_target_modules"]) == ("lora", 4, 8, "fc1")
    capsys.readouterr()
    assert main(["--out", str(tmp_path / "r"), "--resume", "--lora-r", "2"]) == 2
    assert "--lora-r cannot be given with it" in capsys.readouterr().err


def test_start_run_with_lora_writes_the_settings_the_command_reads(tiny_model, tiny_task, tmp_path):
    root = tmp_path / "runs"
    kw = {"model": str(tiny_model), "data": str(tiny_task), "runs_dir": root, "batch_size": 4, "device": "cpu"}
    with pytest.raises(ValueError, match=r"invalid lora_r=0; allowed: an integer from 1 to 1024"):
        runs.start_run("mezo", steps=3, lora_r=0, **kw)
    info = runs.start_run("mezo", steps=3, hyper={"lr": 1e-2}, lora_r=4, eval_every=3, **kw)
    try:
        assert info.name == "mezo-lr0.01-lora4-s0"
        assert runs.run_label(info.config) == "MeZO · lr 0.01 · LoRA r 4 · seed 0"
        config = read_config(info.path)  # what `python -m llm_demo.finetune --out DIR --resume` runs with
        assert (config.peft, config.lora_r, config.lora_alpha, config.lora_target_modules) == \
            ("lora", 4, 16, "q_proj,v_proj")
        deadline = time.time() + 120
        while runs.run_info(info.path).status == "running" and time.time() < deadline:
            time.sleep(0.1)
        done = runs.run_info(info.path)
        assert done.status == "finished", done.error
        last = json.loads((info.path / "metrics.jsonl").read_text().splitlines()[-1])
        # r 4 on q_proj and v_proj of the test model's 2 layers (hidden 16): 2 * 2 * (4 * 16 + 16 * 4) floats
        assert last["memory"]["weights_trainable"] == 4 * 512
    finally:
        current = runs.run_info(info.path)
        if current.pid and current.status == "running":
            os.kill(current.pid, signal.SIGKILL)
