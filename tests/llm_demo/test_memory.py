"""Memory by category, measured from the tensors of a step (llm_demo.memory), and its extrapolation."""

from __future__ import annotations

import pytest
import torch

from llm_demo import memory as M
from llm_demo.finetune import RunConfig, config_hash, load_checkpoint, measures_memory, train
from llm_demo.tasks import BUNDLED_GRADED, BUNDLED_MODEL, encode, load_model, load_task, loss_fn, subset
from optimizers import make_optimizer, state_bytes

# benchmarks/optimizer_step.py on the OPT-125m shape (README, measured 2026-11-23): peak resident set (MB)
README_OPT125M_RSS_MB = {"mezo": 1480, "adamezo": 1494, "zo-adam": 2636, "hizoo": 2052, "adam": 3177}
# python benchmarks/optimizer_step.py --memory (2026-11-30): the peak of all tensors of one step, by llm_demo.memory (MB)
README_OPT125M_TENSORS_MB = {"mezo": 954, "adamezo": 970, "zo-adam": 2214, "hizoo": 1431, "adam": 2461}
# The same benchmark's MeZO process at its "tiny" shape (1.1 M parameters), measured 2026-11-30: 424 MB of
# resident set, nearly all of it the interpreter, torch and transformers (its tensors are computed below).
TINY_SHAPE_RSS_MB = 424


@pytest.fixture(scope="module")
def measured():
    """One measured step (the second: state and buffers in place) of every optimizer on the bundled model,
    on a graded-task batch of 16."""
    torch.set_num_threads(1)
    task = load_task(BUNDLED_GRADED)
    out = {}
    for name in ("mezo", "adamezo", "zo-adam", "hizoo", "adam"):
        model, tok = load_model(BUNDLED_MODEL)
        batch = subset(encode(task, tok, task.splits["train"][:16]), list(range(16)))
        opt = make_optimizer(name, list(model.parameters()), lr=1e-6)
        opt.step(lambda: loss_fn(model, batch))
        loss, mem = M.measure_step(model, opt, lambda: loss_fn(model, batch), state_bytes)
        assert torch.isfinite(torch.as_tensor(loss))
        out[name] = mem
    out["facts"] = M.model_facts(model)
    out["tensors"] = len(list(model.parameters()))
    out["tokens"] = batch["input_ids"].shape[1]
    return out


def test_categories_of_first_order_adam_and_of_mezo_and_adamezo(measured):
    weights = measured["facts"]["parameters"] * 4
    block = measured["facts"]["largest_tensor"] * 4  # the tiny model's largest tensor is under chunk_size
    adam = measured["adam"]
    assert adam["weights"] == weights == 3_751_936
    assert adam["gradients"] == weights
    # m and v for every weight, plus torch's 4-byte step counter per parameter tensor
    assert adam["optimizer_state"] == 2 * weights + 4 * measured["tensors"]
    assert adam["activations_saved"] > 4 * weights and adam["backward_working"] > 0
    assert adam["optimizer_temporaries"] == 2 * block  # single-tensor Adam: sqrt(v) and the step, one tensor at a time
    for name in ("mezo", "adamezo"):
        m = measured[name]
        assert m["weights"] == weights
        assert m["gradients"] == m["activations_saved"] == m["backward_working"] == 0
        assert m["forward_working"] > 0
    assert measured["mezo"]["optimizer_state"] == 16  # the last (seed, c) pair
    assert measured["adamezo"]["optimizer_state"] == 32  # the two pairs so far (at most K = 10)
    assert measured["mezo"]["optimizer_buffers"] == block  # one direction block
    assert measured["adamezo"]["optimizer_buffers"] == 3 * block  # z, m and v blocks: no per-parameter state
    assert measured["zo-adam"]["optimizer_state"] == 2 * weights + 4 * measured["tensors"] + 16  # m, v, counters, a pair
    assert measured["hizoo"]["optimizer_state"] == weights + 16  # Σ and its pair
    for name in ("mezo", "adamezo", "zo-adam", "hizoo", "adam"):
        m = measured[name]
        parts = sum(m[c] for c in M.CATEGORIES)
        assert m["weights"] + m["optimizer_state"] < m["peak_total"] <= parts, name
    # The peak of a zeroth-order step: everything at once while the forward runs (to round-off in scalars)
    mezo = measured["mezo"]
    assert abs(mezo["peak_total"] - (mezo["weights"] + mezo["optimizer_state"] + mezo["forward_working"]
                                     + mezo["optimizer_buffers"])) <= 64


def test_extrapolating_to_the_bundled_model_itself_gives_the_measured_step(measured):
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(BUNDLED_MODEL)
    zo = M.passes_memory(config, 16, measured["tokens"], first_order=False)
    fo = M.passes_memory(config, 16, measured["tokens"], first_order=True)
    assert zo["facts"] == measured["facts"]
    for name in ("mezo", "adamezo", "zo-adam", "hizoo", "adam"):
        got = M.extrapolate(measured[name], name, measured["facts"], fo if name == "adam" else zo)
        for key in ("weights", "gradients", "optimizer_state", "optimizer_temporaries"):
            assert got[key] == measured[name][key], (name, key)
        # the meta device runs the attention without a padding mask: within 1 % (ZO) and 5 % (Adam)
        assert got["peak_total"] == pytest.approx(measured[name]["peak_total"], rel=0.01 if name != "adam" else 0.05)


def test_extrapolation_to_opt_125m_agrees_with_the_measured_step_benchmark(measured):
    """Predicted peak memory ratios to MeZO on the OPT-125m shape (batch 16 x 64, language-model loss, two
    CPU threads) agree within 15 % with benchmarks/optimizer_step.py's measured ones (README table). That
    benchmark reports the resident set, which also holds the Python/torch runtime: the runtime is the same
    benchmark's resident set at its tiny shape, less that shape's tensors (predicted the same way). Its
    --memory run counts the tensors themselves: the predicted peaks agree with those within 2 %."""
    from benchmarks.optimizer_step import SHAPES
    from transformers import OPTConfig

    tiny = OPTConfig(**SHAPES["tiny"], dropout=0.0, attention_dropout=0.0)
    tiny_tensors = M.passes_memory(tiny, 16, 64, first_order=False, loss="lm")["peak_total"]
    runtime = TINY_SHAPE_RSS_MB * 2**20 - tiny_tensors
    assert 350 * 2**20 < runtime < 420 * 2**20
    config = M.opt_config("OPT-125m")
    passes = {fo: M.passes_memory(config, 16, 64, first_order=fo, loss="lm") for fo in (False, True)}
    assert passes[False]["facts"]["parameters"] == 125_239_296
    predicted = {name: M.extrapolate(measured[name], name, measured["facts"], passes[name == "adam"], workers=2)
                 for name in README_OPT125M_RSS_MB}
    assert predicted["adam"]["optimizer_state"] == pytest.approx(8 * 125_239_296, rel=1e-3)
    # three 2^20-element blocks a worker, two workers (and a scalar or two); ZO-Adam: a gradient for every
    # parameter, torch's Adam temporaries the size of the largest tensor (the embedding) and a z block a worker
    assert predicted["adamezo"]["optimizer_temporaries"] == pytest.approx(3 * 2 * 4 * 2**20, rel=1e-4)
    assert predicted["zo-adam"]["optimizer_temporaries"] == pytest.approx(
        4 * (125_239_296 + 2 * 50272 * 768 + 2 * 2**20), rel=1e-4)
    for name, mb in README_OPT125M_TENSORS_MB.items():
        assert predicted[name]["peak_total"] / 2**20 == pytest.approx(mb, rel=0.02), name
    ratio = {n: (p["peak_total"] + runtime) / (predicted["mezo"]["peak_total"] + runtime) for n, p in predicted.items()}
    readme = {n: v / README_OPT125M_RSS_MB["mezo"] for n, v in README_OPT125M_RSS_MB.items()}
    for name in README_OPT125M_RSS_MB:
        assert ratio[name] == pytest.approx(readme[name], rel=0.15), (name, ratio[name], readme[name])


def test_records_carry_the_breakdown_from_the_second_step_and_a_checkpoint_keeps_it(tiny_model, tiny_task, tmp_path):
    assert [s for s in range(1, 31) if measures_memory(s, 10)] == [2, 10, 20, 30]
    config = RunConfig(optimizer="adam", steps=5, eval_every=4, batch_size=4, model=str(tiny_model),
                       data=str(tiny_task))
    records = list(train(config))
    assert ["memory" in r for r in records] == [False, False, True, True, True, True]
    assert [r["memory"]["measured_step"] for r in records[2:]] == [2, 2, 4, 4]
    mem = records[-1]["memory"]
    assert mem["gradients"] == mem["weights"] and mem["batch_size"] == 4
    assert mem["optimizer_state"] == records[-1]["optimizer_state_bytes"]
    good = {"mode": "replay", "step": 0, "wall_time_s": 0.0, "log": [], "model_fingerprint": "x",
            "config_hash": config_hash(config)}
    for memory, ok in (({"weights": 1}, True), ({"weights": 1.5}, False), ({"weights": True}, False), ([1], False)):
        torch.save(good | {"memory": memory}, tmp_path / "c.pt")
        if ok:
            assert load_checkpoint(tmp_path / "c.pt", config)["memory"] == memory
        else:
            with pytest.raises(ValueError, match=r"malformed checkpoint \(the memory breakdown must be a dictionary"):
                load_checkpoint(tmp_path / "c.pt", config)


def test_the_cuda_peak_survives_the_per_step_reset(monkeypatch):
    """The CUDA path on a CPU-only machine: the tracker resets a device's peak statistics to measure one step,
    and the run's peak (peak_memory_bytes) is still the peak since the process started, per device."""
    peaks = {0: 500, 1: 900}
    calls = []
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda i: peaks[i])
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda i: calls.append(("reset", i)) or peaks.update({i: 10}))
    monkeypatch.setattr(torch.cuda, "synchronize", lambda i=None: calls.append(("sync", i)))
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    monkeypatch.setattr(M, "_CUDA_PEAK", {})
    cuda1 = torch.device("cuda:1")
    assert M.cuda_peak_allocated(cuda1) == 900
    M._reset_cuda_peak(torch.device("cuda"))  # no index: the current device
    assert calls == [("sync", 1), ("reset", 1)] and peaks[1] == 10
    assert M.cuda_peak_allocated(cuda1) == 900 and M.cuda_peak_allocated(torch.device("cuda:0")) == 500
    peaks[1] = 1200
    assert M.cuda_peak_allocated(cuda1) == 1200


def test_memtracker_does_not_serve_a_step_with_its_closure_inside():
    """Why llm_demo.memory has its own tracker (checked on this torch): torch's MemTracker refuses the second
    forward of a zeroth-order step, and files a first-order step's forward and backward under optimizer state."""
    from torch.distributed._tools.mem_tracker import MemTracker

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Tanh(), torch.nn.Linear(64, 1))
    x = torch.randn(32, 64)
    for name in ("mezo", "adam"):
        opt = make_optimizer(name, list(model.parameters()), lr=1e-3)
        closure = lambda: model(x).square().mean()  # noqa: E731
        opt.step(closure)
        tracker = MemTracker()
        tracker.track_external(model, opt)
        if name == "mezo":
            with pytest.raises(NotImplementedError, match="multiple iterative calls"), tracker:
                opt.step(closure)
        else:
            with tracker:
                opt.step(closure)
            snap = next(iter(tracker.get_tracker_snapshot("peak").values()))
            by = {str(getattr(k, "value", k)): v for k, v in snap.items()}
            assert by["Activation"] == 0 and by["Optstate"] > 2 * 4 * sum(p.numel() for p in model.parameters())
        for p in model.parameters():
            p.grad = None
