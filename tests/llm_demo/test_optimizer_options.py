"""The library's options in the LLM demo: weight decay in the published/Hugging Face param groups, and
learning-rate schedules (issue 14)."""

from llm_demo.finetune import RunConfig, Trainer


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
