"""float16 and bfloat16 parameters train with every optimizer: updates are computed in float32, state
that needs the range is kept in float32, nothing turns into NaN (issue 12, item 2)."""

import pytest
import torch

from optimizers import OPTIMIZERS, make_optimizer, state_bytes

ALL = list(OPTIMIZERS)
ZO = [n for n in ALL if OPTIMIZERS[n].zeroth_order]
LOW = [torch.float16, torch.bfloat16]


def restore_bound(before: torch.Tensor, perturbation: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """What a ZO step promises after perturbing and moving back: 2·eps·(|θ| + |δθ|) + 2·tiny."""
    fi = torch.finfo(dtype)
    return 2 * fi.eps * (before.double().abs() + perturbation.double().abs()) + 2 * fi.smallest_normal * fi.eps


@pytest.mark.parametrize("dtype", LOW)
@pytest.mark.parametrize("name", ALL)
def test_a_constant_loss_leaves_low_precision_parameters_finite_and_in_place(name, dtype):
    """The issue's example: c = 0 used to give 0/0 (δ = 1e-8 is 0 in float16) and NaN everywhere."""
    p = torch.nn.Parameter(torch.ones(4, dtype=dtype))
    opt = make_optimizer(name, [p])
    if OPTIMIZERS[name].zeroth_order:
        opt.step(lambda: torch.tensor(1.0))
        seed, c = opt.history[-1]
        assert c == 0.0
        z = opt.direction(seed)[0]
        # no update: only the perturbation's round-off remains
        assert bool(((p.detach().double() - 1).abs() <= restore_bound(torch.ones(4), 1e-3 * z, dtype)).all())
    else:
        opt.step(lambda: (p.float() * 0).sum() + 1)
        assert torch.equal(p.detach(), torch.ones(4, dtype=dtype))  # zero gradient, zero update, exactly


LR = {"mezo": 3e-3, "adamezo": 3e-2, "zo-adam": 3e-2, "hizoo": 3e-3, "adam": 3e-2, "adamw": 3e-2, "helene": 0.1,
      "zo-adamu": 3e-3}
LR |= {name: entry.test_lrs["quadratic"] for name, entry in OPTIMIZERS.items() if name not in LR}  # the entry's


@pytest.mark.parametrize("dtype", LOW)
@pytest.mark.parametrize("name", ALL)
def test_low_precision_parameters_train(name, dtype):
    """100 steps on an ill-conditioned quadratic in float16/bfloat16: finite, and the loss falls below 0.6×.
    ε = 1e-2: with |θ| up to 1 a perturbation of 1e-3 is below bfloat16's resolution (2^-8 relative)."""
    curvature = torch.logspace(0, 1, 64)
    p = torch.nn.Parameter(torch.linspace(-1, 1, 64).to(dtype))
    f = lambda: 0.5 * (curvature * p.float() ** 2).sum()  # noqa: E731
    hyper = {"eps": 1e-2} if OPTIMIZERS[name].zeroth_order else {}
    opt = make_optimizer(name, [p], lr=LR[name], seed=0, **hyper)
    start = float(f().detach())
    for _ in range(100):  # HELENE's annealed momentum needs more than 60 (the others pass in 60)
        opt.step(f)
    assert p.dtype == dtype and bool(torch.isfinite(p).all())
    assert float(f().detach()) < 0.6 * start, f"{name} {dtype}: {start} -> {float(f())}"


@pytest.mark.parametrize("dtype", LOW)
@pytest.mark.parametrize("name,keys", [("zo-adam", ("exp_avg", "exp_avg_sq")), ("hizoo", ("hessian",)),
                                       ("adam", ("exp_avg", "exp_avg_sq")), ("adamw", ("exp_avg", "exp_avg_sq"))])
def test_low_precision_state_is_float32_and_counted(name, keys, dtype):
    p = torch.nn.Parameter(torch.ones(10, dtype=dtype))
    opt = make_optimizer(name, [p])
    opt.step(lambda: (p.float() ** 2).sum())
    for key in keys:
        assert opt.state[p][key].dtype == torch.float32 and opt.state[p][key].shape == p.shape
    step_counter = 4 if name != "hizoo" else 0
    pairs = 16 if OPTIMIZERS[name].zeroth_order else 0
    assert state_bytes(opt) == len(keys) * 10 * 4 + step_counter + pairs


def float64_twin(name, params, hyper, dtypes):
    """A float64 optimizer whose directions are drawn in ``dtypes`` (one per parameter) and then upcast:
    the directions of the low-precision run, so that a replayed step is the same step in float64."""
    twin = make_optimizer(name, params, **hyper)
    block_dtype = [dtypes[bl.param] for bl in twin._blocks]
    sampler = twin._samplers[0]
    original = sampler.block

    def block(seed, index, numel, dtype, device, out=None):
        return out.copy_(original(seed, index, numel, block_dtype[index], device))

    sampler.block = block
    return twin


@pytest.mark.parametrize("dtype", LOW)
@pytest.mark.parametrize("name", ZO)
def test_low_precision_steps_equal_exact_arithmetic(name, dtype):
    """Each step on float16/bfloat16 parameters (plus a float32 one, two groups, weight decay) equals the
    same step replayed in float64 with the same directions and c, to within the perturbation's round-off
    and one final rounding, while c²z² is outside float16's range at every step (c ~ 1e4 here; the
    directions depend on torch's float16/bfloat16 normal_, which differs between torch versions: torch
    2.11 drew c = -159 in one step, where c²·max z² still exceeds float16's largest value)."""
    g = torch.Generator().manual_seed(0)
    start = [torch.randn(300, generator=g).to(dtype), torch.randn(7, generator=g)]
    params = [torch.nn.Parameter(t.clone()) for t in start]
    twins = [torch.nn.Parameter(t.double()) for t in start]
    hyper = {"mezo": {"lr": 1e-6}, "adamezo": {"lr": 1e-2, "horizon": 3}, "zo-adam": {"lr": 1e-2},
             "hizoo": {"lr": 1e-6, "hessian_smooth": 1e-6}, "zo-adamu": {"lr": 1e-6}}.get(name, {"lr": 1e-2}) | {"eps": 1e-2, "seed": 3,
                                                                                     "chunk_size": 128}
    groups = lambda ps: [{"params": ps[:1], "weight_decay": 0.1}, {"params": ps[1:]}]  # noqa: E731
    opt = make_optimizer(name, groups(params), **hyper)
    twin = float64_twin(name, groups(twins), hyper, [dtype, torch.float32])
    loss = lambda: 1e3 * sum(((p.float() - 0.3) ** 2).sum() for p in params)  # noqa: E731
    for _ in range(5):
        before = [p.detach().clone() for p in params]
        moves = opt.perturbation(opt.seed_for_step(opt.steps))  # δθ/ε of this step (HiZOO: Σ^{-1/2} z)
        opt.step(loss)
        seed, c = opt.history[-1]
        assert c**2 * float(moves[0].double().abs().max()) ** 2 > torch.finfo(torch.float16).max
        for q, b in zip(twins, before):
            q.data.copy_(b.double())  # the twin starts each step where the low-precision run is
        twin.replay(opt.last_log_entry)
        for p, q, b, move in zip(params, twins, before, moves):
            assert bool(torch.isfinite(p).all())
            perturbation = 1e-2 * move.double()
            tol = restore_bound(b, perturbation, p.dtype) + torch.finfo(p.dtype).eps * q.detach().abs()
            assert bool(((p.detach().double() - q.detach()).abs() <= tol).all()), name
        for p, q in zip(params, twins):
            for key, value in opt.state[p].items():  # ZO-Adam's m gets λθ, θ restored to within round-off
                torch.testing.assert_close(value.double(), twin.state[q][key].double(), rtol=1e-3, atol=1e-30)


@pytest.mark.parametrize("dtype", LOW)
@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_first_order_low_precision_equals_float64_adam(name, dtype):
    """Gradients around 1e-4: g² underflows float16 and torch's eps 1e-8 is 0 there (NaN before). Each
    step equals torch's Adam/AdamW in float64 fed the same gradient, to one rounding."""
    g = torch.Generator().manual_seed(1)
    p = torch.nn.Parameter(torch.randn(50, generator=g).to(dtype))
    q = torch.nn.Parameter(p.detach().double())
    opt = make_optimizer(name, [p], lr=1e-2, weight_decay=0.05)
    ref = (torch.optim.Adam if name == "adam" else torch.optim.AdamW)([q], lr=1e-2, weight_decay=0.05)
    for _ in range(5):
        q.data.copy_(p.detach().double())
        opt.step(lambda: 1e-4 * ((p.float() - 0.3) ** 2).sum())
        q.grad = p.grad.double()
        ref.step()
        assert bool(torch.isfinite(p).all())
        one_rounding = torch.finfo(dtype).eps * q.detach().abs() / 2 + 1e-7 * q.detach().abs()
        assert bool(((p.detach().double() - q.detach()).abs() <= one_rounding).all())
    torch.testing.assert_close(opt.state[p]["exp_avg_sq"].double(), ref.state[q]["exp_avg_sq"], rtol=1e-5, atol=0)


@pytest.mark.parametrize("name", ZO)
def test_unsupported_parameter_dtypes_are_refused_up_front(name):
    p = torch.nn.Parameter(torch.zeros(3, dtype=torch.complex64))
    with pytest.raises(ValueError, match=r"parameters of dtype complex64 are not supported; allowed: "
                                         r"float64, float32, float16, bfloat16"):
        make_optimizer(name, [p])
