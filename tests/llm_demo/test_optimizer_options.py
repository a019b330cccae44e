"""The library's options in the LLM demo: weight decay in the published/Hugging Face param groups, and
learning-rate schedules (issue 14)."""

import pytest
import torch

from llm_demo.finetune import RunConfig, Trainer, main


def config(tiny_model, tiny_task, **kw):
    return RunConfig(**({"optimizer": "mezo", "steps": 4, "eval_every": 100, "batch_size": 8,
                         "model": str(tiny_model), "data": str(tiny_task)} | kw))


def test_weight_decay_skips_biases_and_layer_norms(tiny_model, tiny_task):
    trainer = Trainer(config(tiny_model, tiny_task, hyper={"weight_decay": 0.1}))
    names = {id(p): n for n, p in trainer.model.named_parameters()}
    decayed, other = trainer.optimizer.param_groups
    assert (decayed["weight_decay"], other["weight_decay"]) == (0.1, 0.0)
    assert all("bias" not in names[id(p)] and "layer_norm" not in names[id(p)] for p in decayed["params"])
    assert all("bias" in names[id(p)] or "layer_norm" in names[id(p)] for p in other["params"])
    assert {names[id(p)] for p in other["params"]} >= {"model.decoder.final_layer_norm.weight",
                                                      "model.decoder.layers.0.fc1.bias"}
    plain = Trainer(config(tiny_model, tiny_task))  # no decay: one group, in the model's order
    assert len(plain.optimizer.param_groups) == 1


def test_a_linear_schedule_sets_hugging_faces_lrs(tiny_model, tiny_task):
    from transformers.optimization import _get_linear_schedule_with_warmup_lr_lambda as linear

    trainer = Trainer(config(tiny_model, tiny_task, steps=8, lr_scheduler_type="linear", warmup_steps=3))
    lrs = []
    for record in trainer.records():
        lrs.append(trainer.optimizer.param_groups[0]["lr"])  # the lr of the next step
    base = 1e-3  # MeZO's demo lr (its registry entry)
    expected = [base * linear(t, num_warmup_steps=3, num_training_steps=8) for t in range(1, 9)]
    assert lrs[1:] == pytest.approx(expected, rel=1e-15) and lrs[-1] == 0.0 and max(lrs) == pytest.approx(base)


@pytest.mark.parametrize("optimizer", ["adamezo", "adam"])
def test_a_run_with_a_schedule_resumes_bit_for_bit(tiny_model, tiny_task, optimizer):
    """ZO: the log is replayed with the scheduler stepped after each entry; Adam: the weights and optimizer
    state are loaded and the scheduler is brought to the step. Both continue exactly as the whole run."""
    settings = dict(optimizer=optimizer, steps=6, lr_scheduler_type="cosine", warmup_steps=2,
                    hyper={"weight_decay": 0.01})
    whole = Trainer(config(tiny_model, tiny_task, **settings))
    records = list(whole.records())
    first = Trainer(config(tiny_model, tiny_task, **settings))
    list(first.records(should_stop=lambda: first.step >= 3))
    assert first.checkpoint()["mode"] == ("replay" if optimizer == "adamezo" else "weights")
    resumed = Trainer(config(tiny_model, tiny_task, **settings))
    resumed.restore(first.checkpoint())
    assert resumed.optimizer.param_groups[0]["lr"] == first.optimizer.param_groups[0]["lr"]
    later = list(resumed.records())
    assert [r["train_loss"] for r in later] == [r["train_loss"] for r in records[4:]]
    assert all(torch.equal(p, q) for p, q in zip(resumed.model.parameters(), whole.model.parameters()))


def test_schedule_flags_are_checked(tiny_model, tiny_task, tmp_path, capsys):
    args = ["--model", str(tiny_model), "--data", str(tiny_task), "--out", str(tmp_path / "run"), "--steps", "4"]
    assert main([*args, "--warmup-steps", "2"]) == 2
    assert capsys.readouterr().err.strip() == ("error: warmup_steps=2 needs a schedule with a warm-up; the "
                                               "'constant' schedule has none: use 'constant_with_warmup' (or "
                                               "'linear', 'cosine')")
    assert main([*args, "--lr-scheduler-type", "linear", "--warmup-steps", "9"]) == 2
    assert "invalid warmup_steps=9; allowed: an integer from 0 to the steps (4)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*args, "--lr-scheduler-type", "exponential"])
    assert "invalid choice: 'exponential'" in capsys.readouterr().err
