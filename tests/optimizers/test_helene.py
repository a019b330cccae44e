"""HELENE equals its update rule (optimizers/helene.py) written out on full tensors, with a clipping
threshold per param group (layer), weight decay and a Hessian refreshed every k steps."""

import math

import pytest
import torch

from optimizers import HELENE, make_optimizer


def params():
    g = torch.Generator().manual_seed(2)
    return [torch.nn.Parameter(torch.randn(4, 5, generator=g, dtype=torch.float64)),
            torch.nn.Parameter(torch.randn(6, generator=g, dtype=torch.float64))]


def loss_of(ps):
    a, b = ps
    scales = torch.logspace(0, 2, a.numel(), dtype=torch.float64).reshape(a.shape)
    return (scales * a**2).sum() + (b.sum() - 1) ** 2 + torch.sin(b).pow(2).sum()


def test_helene_equals_its_formula_on_full_tensors():
    ps = params()
    clips, lrs, wds = [1e5, 1e3], [1e-2, 3e-3], [0.1, 0.0]
    groups = [{"params": [p], "lr": lr, "weight_decay": wd, "hessian_clip": clip}
              for p, lr, wd, clip in zip(ps, lrs, wds, clips)]
    b1, b2, k, T, eps, delta = 0.8, 0.95, 3, 7, 1e-3, 1e-6
    opt = HELENE(groups, eps=eps, betas=(b1, b2), hessian_interval=k, anneal_steps=T, delta=delta, seed=4,
                 chunk_size=7)
    ref = [p.detach().clone() for p in ps]
    m = [torch.zeros_like(r) for r in ref]
    h = [torch.zeros_like(r) for r in ref]
    for t in range(25):
        z = opt.direction(opt.seed_for_step(t))
        c = (float(loss_of([r + eps * zi for r, zi in zip(ref, z)]))
             - float(loss_of([r - eps * zi for r, zi in zip(ref, z)]))) / (2 * eps)
        opt.step(lambda: loss_of(ps))
        alpha = b1 + (1 - b1) * math.exp(-t / T)
        for i in range(2):
            g = c * z[i]
            m[i] = b1 * m[i] + alpha * g
            if t % k == 0:
                h[i] = b2 * h[i] + (1 - b2) * g * g
            ref[i] = ref[i] - lrs[i] * (m[i] / (torch.clamp(h[i], min=clips[i]) + delta) + wds[i] * ref[i])
        for p, r in zip(ps, ref):
            torch.testing.assert_close(p.detach(), r, rtol=1e-9, atol=1e-12)
    for p, mi, hi in zip(ps, m, h):
        torch.testing.assert_close(opt.state[p]["exp_avg"], mi, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(opt.state[p]["hessian"], hi, rtol=1e-9, atol=1e-12)
    clipped = [float((hi < c).double().mean()) for hi, c in zip(h, clips)]
    assert clipped[0] > 0.5 and clipped[1] < 0.5, "each layer's threshold is in play"


@pytest.mark.parametrize("kwargs,pattern", [
    ({"hessian_clip": -1.0}, r"HELENE: invalid hessian_clip=-1.0 \(too small\); allowed: a number >= 0"),
    ({"hessian_interval": 0}, r"invalid hessian_interval=0 \(too small\); allowed: an integer >= 1"),
    ({"anneal_steps": 0}, r"invalid anneal_steps=0 \(too small\); allowed: an integer >= 1"),
])
def test_helene_refuses_bad_hyperparameters(kwargs, pattern):
    p = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
    with pytest.raises(ValueError, match=pattern):
        make_optimizer("helene", [p], **kwargs)
    with pytest.raises(ValueError, match=r"HELENE: invalid hessian_clip=-2"):
        HELENE([{"params": [p], "hessian_clip": -2}])
