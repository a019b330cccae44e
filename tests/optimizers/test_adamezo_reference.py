"""AdaMeZO (memory-free, regenerated block by block) equals an explicit AdaMeZO that stores the past
gradient estimates as full vectors. This is the test that proves the memory-free claim (docs/optimizers.md)."""

import math

import pytest
import torch

from optimizers import AdaMeZO, ema_weights, reference_code_equivalent


def make_params():
    """Three tensors of different shapes in two param groups with different lr (float64)."""
    g = torch.Generator().manual_seed(1)
    a = torch.nn.Parameter(torch.randn(4, 5, generator=g, dtype=torch.float64))
    b = torch.nn.Parameter(torch.randn(7, generator=g, dtype=torch.float64))
    c = torch.nn.Parameter(torch.randn(2, 3, 2, generator=g, dtype=torch.float64))
    return [a, b, c]


def loss_of(params):
    """A smooth, non-separable loss with different curvature per coordinate."""
    a, b, c = params
    scales = torch.logspace(0, 2, a.numel(), dtype=torch.float64).reshape(a.shape)
    return ((scales * a**2).sum() + (b.sum() - 1) ** 2 + torch.sin(b).pow(2).sum()
            + (c**2 * torch.arange(1, 13, dtype=torch.float64).reshape(c.shape)).sum() + (a[0, :3] * b[:3]).sum())


def groups_of(params, lrs=(3e-4, 1e-4), weight_decay=(0.0, 0.1)):
    return [{"params": params[:2], "lr": lrs[0], "weight_decay": weight_decay[0]},
            {"params": params[2:], "lr": lrs[1], "weight_decay": weight_decay[1]}]


class ExplicitAdaMeZO:
    """Stores ĝ_{t−k} = c_{t−k} z_{t−k} as full vectors and applies SPEC's formulas directly."""

    def __init__(self, params, lrs, wds, eps, betas, horizon, delta, warmup, directions, seed_for_step):
        self.params, self.lrs, self.wds = params, lrs, wds
        self.eps, self.betas, self.horizon, self.delta, self.warmup = eps, betas, horizon, delta, warmup
        self.directions, self.seed_for_step = directions, seed_for_step
        self.estimates = []  # oldest first, each a list of full tensors
        self.t = 0

    @torch.no_grad()
    def step(self, closure):
        z = self.directions(self.seed_for_step(self.t))
        for p, zi in zip(self.params, z):
            p.add_(zi, alpha=self.eps)
        lp = float(closure())
        for p, zi in zip(self.params, z):
            p.add_(zi, alpha=-2 * self.eps)
        lm = float(closure())
        for p, zi in zip(self.params, z):
            p.add_(zi, alpha=self.eps)
        c = (lp - lm) / (2 * self.eps)
        self.estimates = (self.estimates + [[c * zi for zi in z]])[-self.horizon:]
        count = len(self.estimates)
        newest_first = self.estimates[::-1]
        if self.warmup == "mezo" and (self.t <= self.horizon or self.horizon < 2):  # the published rule
            updates = newest_first[0]
        else:
            a = ema_weights(self.betas[0], count)
            b = ema_weights(self.betas[1], count)
            updates = []
            for i in range(len(self.params)):
                m = sum(a[k] * newest_first[k][i] for k in range(count))
                if self.betas[1] > 0:
                    v = sum(b[k] * newest_first[k][i] ** 2 for k in range(count))
                    updates.append(m / (v.sqrt() + self.delta))
                else:
                    updates.append(m)
        for p, u, lr, wd in zip(self.params, updates, self.lrs, self.wds):
            p.sub_(lr * (u + wd * p))
        self.t += 1


@pytest.mark.parametrize("warmup", ["partial", "mezo"])
@pytest.mark.parametrize("betas", [(0.7, 0.9), (0.9, 0.999), (0.0, 0.9), (0.7, 0.0)])
@pytest.mark.parametrize("horizon", [1, 3, 10])
def test_adamezo_equals_explicit_reference(horizon, betas, warmup):
    params = make_params()
    opt = AdaMeZO(groups_of(params), eps=1e-3, betas=betas, horizon=horizon, delta=1e-8, warmup=warmup,
                  seed=7, chunk_size=5)
    assert len(opt._blocks) > len(params), "the chunk size must split tensors"
    ref_params = [p.detach().clone() for p in params]
    ref = ExplicitAdaMeZO(ref_params, lrs=[3e-4, 3e-4, 1e-4], wds=[0.0, 0.0, 0.1], eps=1e-3, betas=betas,
                          horizon=horizon, delta=1e-8, warmup=warmup, directions=opt.direction,
                          seed_for_step=opt.seed_for_step)
    start = [p.detach().clone() for p in params]
    for _ in range(60):
        opt.step(lambda: loss_of(params))
        ref.step(lambda: loss_of(ref_params))
        for p, q in zip(params, ref_params):
            torch.testing.assert_close(p.detach(), q, rtol=1e-10, atol=1e-12)
    moved = max(float((p.detach() - s).abs().max()) for p, s in zip(params, start))
    assert moved > 1e-3, "the comparison is only meaningful if the parameters moved"


def test_mapping_to_published_reference_update():
    """With SPEC's lr/δ mapping, one full-horizon step equals 100·m'/(sqrt(v') + 1e-5) of the published code."""
    horizon, betas, lr_ref = 5, (0.7, 0.9), 1e-5
    mapped = reference_code_equivalent(lr_ref, betas, horizon)
    params = make_params()
    opt = AdaMeZO([{"params": params}], lr=mapped["lr"], delta=mapped["delta"], betas=betas, horizon=horizon,
                  seed=3, chunk_size=4)
    for _ in range(horizon + 2):
        opt.step(lambda: loss_of(params))
    before = [p.detach().clone() for p in params]
    opt.step(lambda: loss_of(params))
    pairs = opt.history[::-1]  # newest first
    assert len(pairs) == horizon
    for i, p in enumerate(params):
        m = sum(betas[0] ** k * c * opt.direction(s)[i] for k, (s, c) in enumerate(pairs))
        v = sum(betas[1] ** k * c**2 * opt.direction(s)[i] ** 2 for k, (s, c) in enumerate(pairs))
        expected = before[i] - lr_ref * 100 * m / (v.sqrt() + 1e-5)
        torch.testing.assert_close(p.detach(), expected, rtol=1e-9, atol=1e-12)


def test_ema_weights_sum_to_one_and_match_formula():
    w = ema_weights(0.7, 4)
    assert math.isclose(sum(w), 1.0, rel_tol=1e-15)
    assert math.isclose(w[2], 0.3 * 0.49 / (1 - 0.7**4), rel_tol=1e-15)
    assert ema_weights(0.0, 5) == [1.0, 0.0, 0.0, 0.0, 0.0]
