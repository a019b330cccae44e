"""ZO-AdaMU equals its update rule (optimizers/zo_adamu.py) written out on full tensors: the perturbation
is the momentum, drawn around the previous one, and its second moment scales the step."""

import math

import pytest
import torch

from optimizers import ZOAdaMU, make_optimizer


def params():
    g = torch.Generator().manual_seed(6)
    return [torch.nn.Parameter(torch.randn(3, 7, generator=g, dtype=torch.float64)),
            torch.nn.Parameter(torch.randn(5, generator=g, dtype=torch.float64))]


def loss_of(ps):
    a, b = ps
    scales = torch.logspace(0, 2, a.numel(), dtype=torch.float64).reshape(a.shape)
    return (scales * a**2).sum() + (b.sum() - 1) ** 2 + torch.sin(b).pow(2).sum()


def test_zo_adamu_equals_its_formula_on_full_tensors():
    ps = params()
    lrs, wds = [2e-3, 1e-3], [0.1, 0.0]
    b1, b2, unc, T, eps, sigma = 0.7, 0.6, 0.3, 4, 1e-3, 1e-8
    opt = ZOAdaMU([{"params": [p], "lr": lr, "weight_decay": wd} for p, lr, wd in zip(ps, lrs, wds)], eps=eps,
                  betas=(b1, b2), uncertainty=unc, anneal_steps=T, delta=sigma, seed=8, chunk_size=6)
    ref = [p.detach().clone() for p in ps]
    m = [torch.zeros_like(r) for r in ref]
    alphas = []
    for t in range(20):
        alpha = 1.0 if t < T else 1 - (1 - unc) * min(1.0, (t - T) / T)
        alphas.append(alpha)
        u1, u2 = opt.draws(opt.seed_for_step(t))
        zdot = [math.sqrt(alpha) * u for u in u1]
        zddot = [mi + math.sqrt(1 - alpha) * u for mi, u in zip(m, u2)]
        z = [b1 * a + (1 - b1) * b for a, b in zip(zdot, zddot)]
        v = [b2 * a**2 + (1 - b2) * b**2 for a, b in zip(zdot, zddot)]
        c = (float(loss_of([r + eps * zi for r, zi in zip(ref, z)]))
             - float(loss_of([r - eps * zi for r, zi in zip(ref, z)]))) / (2 * eps)
        opt.step(lambda: loss_of(ps))
        assert opt.history[-1][1] == pytest.approx(c, rel=1e-8)
        ref = [r - lr * (c * zi / (vi + sigma).sqrt() + wd * r) for r, zi, vi, lr, wd in zip(ref, z, v, lrs, wds)]
        m = z
        for p, r in zip(ps, ref):
            torch.testing.assert_close(p.detach(), r, rtol=1e-9, atol=1e-12)
    for p, mi in zip(ps, m):
        torch.testing.assert_close(opt.state[p]["momentum"], mi, rtol=1e-9, atol=1e-12)
    assert alphas[:T] == [1.0] * T and alphas[-1] == pytest.approx(unc) and min(alphas) == pytest.approx(unc)


def test_equal_betas_bound_every_coordinate_step_by_lr_times_c():
    """With β1 = β2, |m| <= sqrt(v) (Jensen): no coordinate moves by more than η|c|."""
    p = torch.nn.Parameter(torch.linspace(-2, 2, 200, dtype=torch.float64))
    opt = make_optimizer("zo-adamu", [p], lr=1e-2, betas=(0.6, 0.6), anneal_steps=1, seed=1)
    for _ in range(30):
        before = p.detach().clone()
        opt.step(lambda: (torch.cos(3 * p) * p**2).sum())
        c = opt.history[-1][1]
        assert float((p.detach() - before).abs().max()) <= 1e-2 * abs(c) * (1 + 1e-12) + 1e-15


@pytest.mark.parametrize("kwargs,pattern", [
    ({"uncertainty": 1.5}, r"ZO-AdaMU: invalid uncertainty=1.5 \(too large\); allowed: a number >= 0 and <= 1"),
    ({"anneal_steps": 0}, r"invalid anneal_steps=0 \(too small\); allowed: an integer >= 1"),
    ({"betas": (0.8, 1.0)}, r"invalid beta2=1.0"),
])
def test_zo_adamu_refuses_bad_hyperparameters(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        make_optimizer("zo-adamu", [torch.nn.Parameter(torch.zeros(3))], **kwargs)
