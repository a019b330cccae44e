"""torch.optim.lr_scheduler schedulers drive every optimizer of the registry: each step uses the lr the
scheduler set (bit for bit the run with that lr set by hand), and an optimizer and its scheduler resume
from their state dicts bit for bit, also after the lr reached 0."""

import io
import math

import pytest
import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, LambdaLR, StepLR

from optimizers import OPTIMIZERS, make_optimizer

ALL = list(OPTIMIZERS)
STEPS = 12


def model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh(), torch.nn.Linear(5, 1)).double()


X = torch.randn(16, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)


def loss(m):
    return m(X).pow(2).mean()


def linear(step):  # Hugging Face's linear decay with 3 warm-up steps, to 0 at STEPS
    return step / 3 if step < 3 else max(0.0, (STEPS - step) / (STEPS - 3))


def build(name, m):
    groups = [{"params": list(m[0].parameters()), "lr": 1e-2}, {"params": list(m[2].parameters()), "lr": 3e-3}]
    return make_optimizer(name, groups, seed=4, **({"num_directions": 2} if OPTIMIZERS[name].zeroth_order else {}))


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("schedule", ["lambda", "step", "cosine"])
def test_a_scheduler_sets_the_lr_of_every_step(name, schedule):
    scheduled, by_hand = model(), model()
    opt, twin = build(name, scheduled), build(name, by_hand)
    sched = {"lambda": lambda o: LambdaLR(o, linear), "step": lambda o: StepLR(o, step_size=4, gamma=0.5),
             "cosine": lambda o: CosineAnnealingLR(o, T_max=STEPS)}[schedule](opt)
    base = [g["lr"] for g in twin.param_groups]
    used = []
    for t in range(STEPS):
        factor = {"lambda": linear(t), "step": 0.5 ** (t // 4),
                  "cosine": (1 + math.cos(math.pi * t / STEPS)) / 2}[schedule]
        for g, lr in zip(twin.param_groups, base):
            g["lr"] = lr * factor
        used.append([g["lr"] for g in opt.param_groups])
        assert used[-1] == pytest.approx([g["lr"] for g in twin.param_groups], rel=1e-12)
        for g, h in zip(twin.param_groups, opt.param_groups):  # the very floats the scheduler chose
            g["lr"] = h["lr"]
        opt.step(lambda: loss(scheduled))
        twin.step(lambda: loss(by_hand))
        sched.step()
    assert all(torch.equal(p, q) for p, q in zip(scheduled.parameters(), by_hand.parameters()))
    assert len({u[0] for u in used}) > 2, "the lr must actually change"


@pytest.mark.parametrize("name", ALL)
def test_optimizer_and_scheduler_resume_bit_for_bit_even_at_lr_zero(name):
    full = model()
    opt = build(name, full)
    sched = LambdaLR(opt, linear)
    for _ in range(STEPS):
        opt.step(lambda: loss(full))
        sched.step()
    part = model()
    opt1 = build(name, part)
    sched1 = LambdaLR(opt1, linear)
    for t in range(STEPS):
        if t in (5, STEPS - 1):  # mid-run, and with the next lr at 0 after the last decay step
            buffer = io.BytesIO()
            torch.save({"opt": opt1.state_dict(), "sched": sched1.state_dict()}, buffer)
            buffer.seek(0)
            saved = torch.load(buffer, weights_only=False)
            opt1 = build(name, part)
            sched1 = LambdaLR(opt1, linear)
            opt1.load_state_dict(saved["opt"])
            sched1.load_state_dict(saved["sched"])
        opt1.step(lambda: loss(part))
        sched1.step()
    assert [g["lr"] for g in opt1.param_groups] == [0.0, 0.0] == [g["lr"] for g in opt.param_groups]
    assert all(torch.equal(p, q) for p, q in zip(part.parameters(), full.parameters()))
    buffer = io.BytesIO()
    torch.save(opt1.state_dict(), buffer)  # a state with lr 0 (the end of a linear schedule) loads
    buffer.seek(0)
    build(name, model()).load_state_dict(torch.load(buffer, weights_only=False))
