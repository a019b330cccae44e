"""ZOTrainer: the Hugging Face Trainer with a zeroth-order optimizer equals llm_demo's own loop; refusals."""

import pytest
import torch
from transformers import TrainingArguments

from llm_demo import trainer as T
from llm_demo.finetune import RunConfig, Trainer
from llm_demo.tasks import load_model


def config(tiny_model, tiny_task, **kw):
    return RunConfig(**({"optimizer": "adamezo", "steps": 6, "eval_every": 3, "batch_size": 8,
                         "model": str(tiny_model), "data": str(tiny_task)} | kw))


def close(a, b, rel=1e-6):
    return a == pytest.approx(b, rel=rel, abs=1e-9)


@pytest.mark.parametrize("optimizer,extra", [
    ("mezo", {}),
    ("adamezo", {}),
    ("adamezo", {"lr_scheduler_type": "linear", "warmup_steps": 2, "hyper": {"lr": 3e-3, "weight_decay": 0.1}}),
    ("hizoo", {"hyper": {"num_directions": 2}}),
    ("mezo", {"peft": "lora", "hyper": {"lr": 1e-2}}),
])
def test_zo_trainer_equals_our_loop(tiny_model, tiny_task, tmp_path, optimizer, extra):
    cfg = config(tiny_model, tiny_task, optimizer=optimizer, **extra)
    ours = Trainer(cfg)
    records = list(ours.records())
    zt = T.from_run_config(cfg, tmp_path / "hf", logging_steps=1)
    zt.train()
    assert len(zt.zo_log) == cfg.steps == len(records) - 1
    for rec, z, entry in zip(records[1:], zt.zo_log, ours.log):
        parts = ours.optimizer.directions_of(entry)
        c = sum(p[1] for p in parts) / len(parts)
        assert z["step"] == rec["step"] and z["forward_passes"] == rec["forward_passes"]
        assert close(z["train_loss"], rec["train_loss"]) and close(z["projected_grad"], c)
    # what Trainer logged: every step's loss, forward passes and c, no grad_norm; the evaluations
    logged = {h["step"]: h for h in zt.state.log_history if "loss" in h}
    assert sorted(logged) == list(range(1, cfg.steps + 1)) and not any("grad_norm" in h for h in logged.values())
    assert all(close(logged[z["step"]]["loss"], z["train_loss"]) and logged[z["step"]]["projected_grad"] ==
               z["projected_grad"] and logged[z["step"]]["forward_passes"] == z["forward_passes"] for z in zt.zo_log)
    evals = {h["step"]: h for h in zt.state.log_history if "eval_loss" in h}
    ours_evals = {r["step"]: r for r in records if "eval_loss" in r and r["step"] > 0}
    assert sorted(evals) == sorted(ours_evals) == [3, 6]
    for step, h in evals.items():
        assert close(h["eval_loss"], ours_evals[step]["eval_loss"])
        assert h["eval_accuracy"] == ours_evals[step]["eval_accuracy"]
    # the learning-rate schedule stepped the zeroth-order optimizer as in our loop
    assert [g["lr"] for g in zt.zo.param_groups] == [g["lr"] for g in ours.optimizer.param_groups]
    assert all(torch.allclose(p, q, rtol=1e-6, atol=1e-8) for p, q in zip(ours.model.parameters(),
                                                                            zt.model.parameters()))


def test_save_steps_and_resume_from_a_trainer_checkpoint(tiny_model, tiny_task, tmp_path):
    cfg = config(tiny_model, tiny_task, optimizer="adamezo")
    whole = T.from_run_config(cfg, tmp_path / "hf", save_strategy="steps", save_steps=3, logging_steps=1)
    whole.train()
    saved = tmp_path / "hf" / "checkpoint-3"
    assert {"optimizer.pt", "scheduler.pt", "trainer_state.json"} <= {p.name for p in saved.iterdir()}
    again = T.from_run_config(cfg, tmp_path / "hf2", logging_steps=1)
    again.train(resume_from_checkpoint=str(saved))
    assert [z["step"] for z in again.zo_log] == [4, 5, 6]
    for a, b in zip(again.zo_log, whole.zo_log[3:]):
        assert a["forward_passes"] == b["forward_passes"]
        assert close(a["train_loss"], b["train_loss"]) and close(a["projected_grad"], b["projected_grad"])


@pytest.mark.parametrize("arguments,message", [
    ({"gradient_accumulation_steps": 4}, "gradient_accumulation_steps=4: a zeroth-order step evaluates its two "
                                         "perturbed losses on one batch"),
    ({"bf16": True}, "bf16=True: mixed-precision autocast is refused"),
    ({T.CHECKPOINTING: True}, f"{T.CHECKPOINTING}=True: there is no backward pass"),  # the installed name
    ({"neftune_noise_alpha": 5.0}, "neftune_noise_alpha=5.0: NEFTune adds fresh noise"),
])
def test_refused_training_arguments_say_why(tiny_model, tmp_path, arguments, message):
    model, _ = load_model(tiny_model)
    args = TrainingArguments(str(tmp_path), max_steps=2, report_to=[], use_cpu=True, **arguments)
    with pytest.raises(ValueError) as e:
        T.ZOTrainer(model, args, zo_optimizer="mezo")
    assert str(e.value).startswith("ZOTrainer trains without a backward pass, so these TrainingArguments are "
                                   "refused: ") and message in str(e.value)


def test_refused_optimizers_and_hyperparameters(tiny_model, tmp_path):
    model, _ = load_model(tiny_model)
    args = TrainingArguments(str(tmp_path), max_steps=2, report_to=[], use_cpu=True)
    with pytest.raises(ValueError, match="zo_optimizer='adam' is a first-order optimizer; ZOTrainer takes a "
                                         "zeroth-order one"):
        T.ZOTrainer(model, args, zo_optimizer="adam")
    with pytest.raises(ValueError, match="zo_hyper sets lr: give them as TrainingArguments"):
        T.ZOTrainer(model, args, zo_optimizer="mezo", zo_hyper={"lr": 1e-3})
    with pytest.raises(ValueError, match="MeZO has no hyperparameter 'horizon'; allowed: "):
        T.ZOTrainer(model, args, zo_optimizer="mezo", zo_hyper={"horizon": 3})


def test_more_processes_than_gpus_is_one_sentence_before_any_model_loads(tiny_model, tiny_task, tmp_path,
                                                                          monkeypatch):
    """Two processes on one GPU: Trainer would put both on cuda:0 (NCCL's "Duplicate GPU detected", seen
    on the GPU machine); the run is refused first, with what to give instead."""
    import llm_demo.finetune as F

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(F, "check_device", lambda device: torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr("llm_demo.tasks.load_model", lambda *a, **k: pytest.fail("a model was loaded"))
    cfg = RunConfig(optimizer="mezo", steps=2, batch_size=8, model=str(tiny_model), data=str(tiny_task))
    with pytest.raises(ValueError, match=r"^device cuda with 2 processes: each process uses cuda:LOCAL_RANK, so "
                                         r"give --device cuda \(or auto\) and at least 2 CUDA devices \(found 1\), "
                                         r"or --device cpu$"):
        T.from_run_config(cfg, tmp_path / "hf")


@pytest.mark.parametrize("optimizer", ["mezo", "adamezo"])
def test_two_processes_under_torchrun_equal_one_process(tiny_model, tiny_task, tmp_path, optimizer):
    """Trainer's own distributed setup (torchrun, 2 gloo processes, each a half of the batch of 8), with
    the losses averaged through the optimizer's process_group, gives one process's steps and weights."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    from llm_demo import distributed

    repo = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if k not in distributed.ENV}
    env["PYTHONPATH"] = str(repo) + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           str(Path(__file__).with_name("trainer_dist_worker.py")), str(tiny_model), str(tiny_task),
                           optimizer, str(tmp_path / "two")], cwd=repo, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    two = json.loads((tmp_path / "two" / "result.json").read_text())
    cfg = RunConfig(optimizer=optimizer, steps=4, eval_every=2, batch_size=8, model=str(tiny_model),
                    data=str(tiny_task), device="cpu")  # gloo, as the worker (also where CUDA is visible)
    one = T.from_run_config(cfg, tmp_path / "one", logging_steps=1)
    one.train()
    assert two["world"] == 2 and len(two["log"]) == len(one.zo_log) == 4
    for a, b in zip(two["log"], one.zo_log):
        assert a["step"] == b["step"] and a["forward_passes"] == b["forward_passes"]
        assert close(a["train_loss"], b["train_loss"]) and close(a["projected_grad"], b["projected_grad"])
    weights = torch.cat([p.detach().reshape(-1).double() for p in one.model.parameters()])
    assert torch.allclose(torch.tensor(two["weights"], dtype=torch.float64), weights, rtol=1e-6, atol=1e-8)


def test_loop_order_sampler_is_the_loops_batches_and_slices_them_by_rank():
    from llm_demo.finetune import batch_indices

    whole = list(T.LoopOrderSampler(7, 100, 16, 5))
    assert whole == [batch_indices(7, t, 100, 16).tolist() for t in range(5)]
    ranks = [list(T.LoopOrderSampler(7, 100, 16, 5, r, 2)) for r in (0, 1)]
    assert all(sorted(a + b) == sorted(w) and len(a) == len(b) == 8 for a, b, w in zip(*ranks, whole))
