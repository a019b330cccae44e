"""Several directions a step (``num_directions=q``, the averaged q-SPSA estimate): every ZO optimizer
takes 2q forward passes (HiZOO 2q + 1) and updates with ĝ = (1/q) Σ_j c_j z_j, equal to an explicit
reference to float64 round-off; q = 1 is the two-point step (the rest of the suite checks that bit for
bit against explicit references and stored results)."""

import io

import pytest
import torch

from optimizers import OPTIMIZERS, ema_weights, make_optimizer

ZO = [n for n in OPTIMIZERS if OPTIMIZERS[n].zeroth_order]


def params():
    g = torch.Generator().manual_seed(3)
    a = torch.nn.Parameter(torch.randn(3, 4, generator=g, dtype=torch.float64))
    b = torch.nn.Parameter(torch.randn(5, generator=g, dtype=torch.float64))
    return [a, b]


def loss_of(ps):
    a, b = ps
    scales = torch.logspace(0, 1.5, a.numel(), dtype=torch.float64).reshape(a.shape)
    return (scales * a**2).sum() + (b.sum() - 1) ** 2 + torch.sin(b).pow(2).sum() + (a[0, :3] * b[:3]).sum()


def groups(ps):
    return [{"params": ps[:1], "lr": 2e-3, "weight_decay": 0.05}, {"params": ps[1:], "lr": 1e-3}]


LRS, WDS = [2e-3, 1e-3], [0.05, 0.0]


def spsa(opt, ref, seeds, directions, eps, f):
    """c_j for each direction (the reference's own parameters)."""
    cs = []
    for z in directions:
        plus = [p + eps * zi for p, zi in zip(ref, z)]
        minus = [p - eps * zi for p, zi in zip(ref, z)]
        cs.append((float(f(plus)) - float(f(minus))) / (2 * eps))
    return cs


@pytest.mark.parametrize("name", ["mezo", "adamezo", "zo-adam", "hizoo"])
def test_q_directions_equal_an_explicit_averaged_estimate(name):
    q, eps = 3, 1e-3
    ps = params()
    opt = make_optimizer(name, groups(ps), eps=eps, seed=5, chunk_size=4, num_directions=q,
                         **({"horizon": 4} if name == "adamezo" else {"hessian_smooth": 0.05} if name == "hizoo"
                            else {}))
    ref = [p.detach().clone() for p in ps]
    estimates = []  # AdaMeZO: the steps' ĝ, oldest first
    adam = torch.optim.Adam([{"params": [r], "lr": lr, "weight_decay": wd}
                             for r, lr, wd in zip([x.requires_grad_() for x in ref], LRS, WDS)],
                            betas=(0.9, 0.999), eps=1e-8) if name == "zo-adam" else None
    sigma = [torch.ones_like(r) for r in ref]
    # HiZOO's curvature |L+ + L− − 2 L0|/(2ε²) amplifies round-off by 1/ε²: a looser tolerance
    rtol, atol = (1e-7, 1e-10) if name == "hizoo" else (1e-10, 1e-12)
    for t in range(25):
        seeds = opt.step_seeds(t)
        assert len(set(seeds)) == q and seeds[0] == opt.seed_for_step(t)
        with torch.no_grad():
            if name == "hizoo":
                l0 = float(loss_of(ref))
                directions = [[z / s.sqrt() for z, s in zip(opt.direction(sd), sigma)] for sd in seeds]
            else:
                directions = [opt.direction(sd) for sd in seeds]
            cs = spsa(opt, ref, seeds, directions, eps, loss_of)
        opt.step(lambda: loss_of(ps))
        assert [c for _, c in opt.history[-q:]] == pytest.approx(cs, rel=rtol, abs=atol)
        with torch.no_grad():
            if name == "hizoo":
                curv = []
                for d in directions:
                    lp = float(loss_of([r + eps * di for r, di in zip(ref, d)]))
                    lm = float(loss_of([r - eps * di for r, di in zip(ref, d)]))
                    curv.append(abs(lp + lm - 2 * l0) / (2 * eps**2))
                raw = [opt.direction(sd) for sd in seeds]
                new_sigma = [(1 - 0.05) * s + 0.05 * s * sum(cv * z[i] ** 2 for cv, z in zip(curv, raw)) / q
                             for i, s in enumerate(sigma)]
                sigma = new_sigma
                g = [sum(c * z[i] for c, z in zip(cs, raw)) / q / sigma[i].sqrt() for i in range(2)]
            else:
                g = [sum(c * d[i] for c, d in zip(cs, directions)) / q for i in range(2)]
            if name in ("mezo", "hizoo"):
                for r, gi, lr, wd in zip(ref, g, LRS, WDS):
                    r.mul_(1 - lr * wd).sub_(lr * gi)
            elif name == "adamezo":
                estimates = (estimates + [g])[-4:]
                k = len(estimates)
                a, b = ema_weights(0.7, k), ema_weights(0.9, k)
                for i, (r, lr, wd) in enumerate(zip(ref, LRS, WDS)):
                    m = sum(a[j] * estimates[-1 - j][i] for j in range(k))
                    v = sum(b[j] * estimates[-1 - j][i] ** 2 for j in range(k))
                    r.mul_(1 - lr * wd).sub_(lr * m / (v.sqrt() + 1e-8))
        if adam is not None:
            for r, gi in zip(ref, g):
                r.grad = gi
            adam.step()
        for p, r in zip(ps, ref):
            torch.testing.assert_close(p.detach(), r.detach(), rtol=rtol, atol=atol)
    assert opt.forward_passes == 25 * (2 * q + (name == "hizoo"))
    assert len(opt.history) == q * (4 if name == "adamezo" else 1)


@pytest.mark.parametrize("name", ZO)
def test_q_directions_resume_and_replay_bit_for_bit(name):
    def model():
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 1)).double()

    x = torch.randn(32, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    hyper = {"lr": 1e-2, "seed": 2, "seed_budget": 5, "num_directions": 3, "chunk_size": 7}

    def run(m, opt, steps, log=None):
        for _ in range(steps):
            opt.step(lambda: m(x).pow(2).mean())
            if log is not None:
                log.append(opt.last_log_entry)

    full, log = model(), []
    full_opt = make_optimizer(name, full.parameters(), **hyper)
    run(full, full_opt, 12, log)
    part = model()
    opt = make_optimizer(name, part.parameters(), **hyper)
    run(part, opt, 5)
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    resumed = make_optimizer(name, part.parameters(), **(hyper | {"seed": 9}))
    resumed.load_state_dict(torch.load(buffer, weights_only=False))
    run(part, resumed, 7)
    assert all(torch.equal(p, q) for p, q in zip(part.parameters(), full.parameters()))
    assert resumed.history == full_opt.history and resumed.forward_passes == full_opt.forward_passes
    replayed = model()
    opt2 = make_optimizer(name, replayed.parameters(), **hyper)
    for entry in log:
        assert len(entry) == 3 * (3 if name == "hizoo" else 2)
        opt2.replay(entry)
    assert all(torch.equal(p, q) for p, q in zip(replayed.parameters(), full.parameters()))
    with pytest.raises(ValueError, match=r"replay: invalid log entry .*for each of 3 directions"):
        make_optimizer(name, model().parameters(), **hyper).replay(log[0][:2])


@pytest.mark.parametrize("name", ZO)
def test_q_directions_pass_counts_and_registry(name):
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    calls = []
    opt = make_optimizer(name, [p], lr=1e-3, num_directions=4)

    def f():
        calls.append(1)
        return (p**2).sum()

    for _ in range(3):
        opt.step(f)
    per_step = OPTIMIZERS[name].forward_passes({"num_directions": 4})
    assert len(calls) == opt.forward_passes == 3 * per_step == 3 * (8 + OPTIMIZERS[name].cls.extra_forward_passes)
    assert opt.forward_passes_per_step == per_step
    with pytest.raises(ValueError, match=r"invalid num_directions=0 \(too small\); allowed: an integer >= 1"):
        make_optimizer(name, [p], num_directions=0)


def test_more_directions_lower_the_estimate_error():
    """The averaged estimate's error against the true gradient falls with q (about 1/sqrt(q))."""
    x = torch.nn.Parameter(torch.linspace(-1, 1, 50, dtype=torch.float64))
    grad = 2 * x.detach()
    errors = {}
    for q in (1, 16):
        err = []
        for seed in range(20):
            opt = make_optimizer("mezo", [x], lr=1.0, eps=1e-4, seed=seed, num_directions=q)
            before = x.detach().clone()
            opt.step(lambda: (x**2).sum())
            estimate = before - x.detach()  # lr 1: the step is −ĝ
            x.data.copy_(before)
            err.append(float((estimate - grad).norm() / grad.norm()))
        errors[q] = sum(err) / len(err)
    assert errors[16] < 0.4 * errors[1]
