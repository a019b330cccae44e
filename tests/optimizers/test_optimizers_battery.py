"""The same battery over every optimizer of the registry: reproducibility, resume, counts, descent."""

import io
import os

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

from optimizers import OPTIMIZERS, AdaMeZO, HiZOO, MeZO, ZOAdam, make_optimizer, state_bytes, torch_compat

ALL = list(OPTIMIZERS)
ZO = [n for n in ALL if OPTIMIZERS[n].zeroth_order]


def small_model(seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)).to(dtype)


def mlp_data(dtype=torch.float64):
    g = torch.Generator().manual_seed(123)
    x = torch.randn(64, 4, generator=g, dtype=dtype)
    y = torch.sin(x[:, :1] * 2) + 0.5 * x[:, 1:2] * x[:, 2:3]
    return x, y


def mlp_loss(model, x, y):
    return torch.nn.functional.mse_loss(model(x), y)


def run(name, steps, seed=0, model_seed=0, **hyper):
    model = small_model(model_seed)
    x, y = mlp_data()
    opt = make_optimizer(name, model.parameters(), seed=seed, **({"lr": 1e-3} | hyper))
    losses = [float(opt.step(lambda: mlp_loss(model, x, y))) for _ in range(steps)]
    return model, opt, losses


def flat(model):
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


@pytest.mark.parametrize("name", ALL)
def test_same_seed_same_trajectory(name):
    m1, _, l1 = run(name, 15, seed=5)
    m2, _, l2 = run(name, 15, seed=5)
    assert l1 == l2
    assert torch.equal(flat(m1), flat(m2))
    if name in ZO:
        m3, _, _ = run(name, 15, seed=6)
        assert not torch.equal(flat(m1), flat(m3)), "another seed must give another trajectory"


@pytest.mark.parametrize("name", ALL)
def test_resume_from_state_dict_is_bit_for_bit(name):
    hyper = {"seed_budget": 4} if name in ZO else {}
    model_full, opt_full, losses_full = run(name, 20, seed=9, **hyper)

    model, opt, losses = run(name, 8, seed=9, **hyper)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=False)

    fresh = small_model(42)  # other weights: everything must come from the checkpoint
    fresh.load_state_dict(saved["model"])
    opt2 = make_optimizer(name, fresh.parameters(), seed=1, lr=1e-3)  # another seed: state must win
    opt2.load_state_dict(saved["opt"])
    x, y = mlp_data()
    losses += [float(opt2.step(lambda: mlp_loss(fresh, x, y))) for _ in range(12)]
    assert losses == losses_full
    assert torch.equal(flat(fresh), flat(model_full))
    assert opt2.forward_passes == opt_full.forward_passes
    assert opt2.history == opt_full.history


PASSES = {"mezo": 2, "adamezo": 2, "zo-adam": 2, "hizoo": 3, "adam": 1, "adamw": 1}


@pytest.mark.parametrize("name", ALL)
def test_forward_passes_per_step(name):
    expected = PASSES.get(name, OPTIMIZERS[name].forward_passes_per_step)  # new optimizers: their entry's figure
    model = small_model()
    x, y = mlp_data()
    calls = []

    def closure():
        calls.append(1)
        return mlp_loss(model, x, y)

    opt = make_optimizer(name, model.parameters(), lr=1e-3)
    for _ in range(5):
        opt.step(closure)
    assert len(calls) == 5 * expected
    assert opt.forward_passes == 5 * expected
    assert OPTIMIZERS[name].forward_passes_per_step == expected


@pytest.mark.parametrize("name", ZO)
def test_seed_budget_uses_exactly_n_directions(name):
    model = small_model()
    x, y = mlp_data()
    opt = make_optimizer(name, model.parameters(), lr=1e-4, seed=3, seed_budget=3)
    seeds = set()
    for _ in range(60):
        opt.step(lambda: mlp_loss(model, x, y))
        seeds.add(opt.history[-1][0])
    assert seeds == set(opt.seed_pool)
    assert len(seeds) == 3
    directions = {tuple(torch.cat([z.reshape(-1) for z in opt.direction(s)]).tolist()) for s in seeds}
    assert len(directions) == 3


def test_fresh_seeds_without_budget_never_repeat():
    opt = MeZO([torch.nn.Parameter(torch.zeros(3))], seed=0)
    seeds = [opt.seed_for_step(t) for t in range(2000)]
    assert len(set(seeds)) == 2000


def quadratic_100d(dtype=torch.float64):
    """f(x) = ½ Σ λ_i x_i², λ log-spaced over [1, 100] (condition number 100)."""
    curvature = torch.logspace(0, 2, 100, dtype=dtype)
    x = torch.nn.Parameter(torch.ones(100, dtype=dtype))
    return x, (lambda: 0.5 * (curvature * x**2).sum())


QUADRATIC_LR = {name: entry.test_lrs["quadratic"] for name, entry in OPTIMIZERS.items()}  # each entry's test lrs
MLP_LR = {name: entry.test_lrs["mlp"] for name, entry in OPTIMIZERS.items()}


@pytest.mark.parametrize("name", ALL)
def test_lowers_ill_conditioned_quadratic(name):
    x, f = quadratic_100d()
    start = float(f().detach())
    opt = make_optimizer(name, [x], lr=QUADRATIC_LR[name], seed=0)
    for _ in range(400):
        opt.step(f)
    assert float(f().detach()) < 0.25 * start, f"{name}: {start} -> {float(f())}"


@pytest.mark.parametrize("name", ALL)
def test_lowers_mlp_loss(name):
    _, _, losses = run(name, 300, lr=MLP_LR[name])
    assert sum(losses[-20:]) / 20 < 0.7 * losses[0], f"{name}: {losses[0]} -> {losses[-1]}"


def test_betas_zero_reproduce_mezo_step_for_step():
    params_a = [p for p in small_model().parameters()]
    params_b = [p for p in small_model().parameters()]
    x, y = mlp_data()

    def groups(ps):
        return [{"params": ps[:2], "lr": 2e-3, "weight_decay": 0.01}, {"params": ps[2:], "lr": 5e-4}]

    def loss(ps):
        return torch.nn.functional.mse_loss(torch.tanh(x @ ps[0].T + ps[1]) @ ps[2].T + ps[3], y)

    mezo = MeZO(groups(params_a), eps=1e-3, seed=11, chunk_size=7)
    ada = AdaMeZO(groups(params_b), eps=1e-3, betas=(0.0, 0.0), horizon=10, seed=11, chunk_size=7)
    for _ in range(40):
        la = mezo.step(lambda: loss(params_a))
        lb = ada.step(lambda: loss(params_b))
        assert torch.equal(la, lb)
        for p, q in zip(params_a, params_b):
            assert torch.equal(p, q)


def test_hizoo_without_smoothing_reproduces_mezo():
    params_a = [p for p in small_model().parameters()]
    params_b = [p for p in small_model().parameters()]
    x, y = mlp_data()

    def loss(ps):
        return torch.nn.functional.mse_loss(torch.tanh(x @ ps[0].T + ps[1]) @ ps[2].T + ps[3], y)

    mezo = MeZO(params_a, lr=2e-3, weight_decay=0.05, seed=4, chunk_size=9)
    hizoo = HiZOO(params_b, lr=2e-3, weight_decay=0.05, hessian_smooth=0.0, seed=4, chunk_size=9)
    for _ in range(40):
        mezo.step(lambda: loss(params_a))
        hizoo.step(lambda: loss(params_b))
        for p, q in zip(params_a, params_b):
            assert torch.equal(p, q)
    assert hizoo.forward_passes == 120 and mezo.forward_passes == 80


def test_hizoo_hessian_estimate_follows_formula():
    x = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64))
    scales = torch.tensor([1.0, 10.0, 100.0], dtype=torch.float64)
    f = lambda: (scales * x**2).sum()  # noqa: E731
    opt = HiZOO([x], lr=1e-3, eps=1e-2, hessian_smooth=0.1, seed=2)
    theta = x.detach().clone()
    l0 = float(f().detach())
    opt.step(f)
    s, c = opt.history[-1]
    z = opt.direction(s)[0]
    lp = float((scales * (theta + 1e-2 * z) ** 2).sum())
    lm = float((scales * (theta - 1e-2 * z) ** 2).sum())
    sigma = 0.9 + 0.1 * abs(lp + lm - 2 * l0) / (2 * 1e-4) * z * z
    torch.testing.assert_close(opt.state[x]["hessian"], sigma, rtol=1e-12, atol=0)
    torch.testing.assert_close(x.detach(), theta - 1e-3 * c * z / sigma.sqrt(), rtol=1e-12, atol=1e-15)


def test_zo_adam_equals_torch_adam_fed_the_same_estimate():
    params = [p for p in small_model().parameters()]
    ref = [p.detach().clone().requires_grad_(True) for p in params]
    x, y = mlp_data()

    def loss(ps):
        return torch.nn.functional.mse_loss(torch.tanh(x @ ps[0].T + ps[1]) @ ps[2].T + ps[3], y)

    groups = lambda ps: [{"params": ps[:2], "lr": 1e-2, "weight_decay": 0.1}, {"params": ps[2:], "lr": 3e-3}]  # noqa: E731
    zo = ZOAdam(groups(params), eps=1e-3, betas=(0.8, 0.99), delta=1e-7, seed=8, chunk_size=6)
    adam = torch.optim.Adam(groups(ref), betas=(0.8, 0.99), eps=1e-7)
    for _ in range(30):
        zo.step(lambda: loss(params))
        seed, c = zo.history[-1]
        for p, z in zip(ref, zo.direction(seed)):
            p.grad = c * z
        adam.step()
        for p, q in zip(params, ref):
            torch.testing.assert_close(p.detach(), q.detach(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("horizon", [1, 4])
def test_adamezo_keeps_no_parameter_sized_state(horizon):
    model = small_model()
    x, y = mlp_data()
    opt = AdaMeZO(model.parameters(), lr=1e-3, horizon=horizon)
    for t in range(1, 8):
        opt.step(lambda: mlp_loss(model, x, y))
        assert len(opt.state) == 0
        sd = opt.state_dict()
        assert sd["state"] == {}
        assert len(opt.history) == min(t, horizon)
        assert state_bytes(opt) == 16 * min(t, horizon)


def test_state_bytes_of_full_memory_methods():
    model = small_model()  # 4*8 + 8 + 8 + 1 = 49 parameters, float64
    x, y = mlp_data()
    zo = make_optimizer("zo-adam", model.parameters())
    zo.step(lambda: mlp_loss(model, x, y))
    assert state_bytes(zo) == 2 * 49 * 8 + 4 * 4 + 16  # m, v; four float32 step counters; one pair
    hizoo = make_optimizer("hizoo", model.parameters())
    hizoo.step(lambda: mlp_loss(model, x, y))
    assert state_bytes(hizoo) == 49 * 8 + 16


def test_adamezo_temporaries_are_bounded_by_the_chunk(monkeypatch):
    """Every generated block is at most chunk_size elements, and a step regenerates K + 2 directions."""
    model = small_model()
    x, y = mlp_data()
    opt = AdaMeZO(model.parameters(), lr=1e-3, horizon=5, chunk_size=6)
    sizes = []
    original = opt._samplers[0].block

    def spy(seed, index, numel, dtype, device, out=None):
        sizes.append(numel)
        return original(seed, index, numel, dtype, device, out=out)

    monkeypatch.setattr(opt._samplers[0], "block", spy)
    n = sum(p.numel() for p in model.parameters())
    for t in range(1, 8):
        before = opt.generated_elements
        opt.step(lambda: mlp_loss(model, x, y))
        assert opt.generated_elements - before == (2 + min(t, 5)) * n
    assert max(sizes) == 6
    owners = {buf.untyped_storage().data_ptr(): buf.untyped_storage().nbytes() for buf in opt._buffers.values()}
    assert sum(owners.values()) <= 3 * 6 * 8, "temporaries: z, m and v, one block each (float64)"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_directions_follow_the_parameter_dtype(dtype):
    p = torch.nn.Parameter(torch.zeros(10, dtype=dtype))
    opt = AdaMeZO([p], chunk_size=4)
    z = opt.direction(123)[0]
    assert z.dtype == dtype and z.shape == p.shape
    assert torch.equal(z, opt.direction(123)[0])


def test_rademacher_directions_are_plus_minus_one():
    p = torch.nn.Parameter(torch.zeros(1000))
    opt = MeZO([p], distribution="rademacher")
    z = opt.direction(5)[0]
    assert set(z.unique().tolist()) == {-1.0, 1.0}
    assert 400 < int((z > 0).sum()) < 600


def test_directions_are_gaussian_and_independent_of_chunking():
    """Block b of a direction depends on (seed, b) only; the law is N(0, 1)."""
    p = torch.nn.Parameter(torch.zeros(200_000))
    z = MeZO([p], chunk_size=50_000).direction(99)[0]
    assert abs(float(z.mean())) < 0.01 and abs(float(z.std()) - 1) < 0.01
    z2 = MeZO([p], chunk_size=50_000, seed=123).direction(99)[0]
    assert torch.equal(z, z2), "direction(seed) does not depend on the optimizer's own seed"
    z3 = MeZO([p], chunk_size=100_000).direction(99)[0]
    assert not torch.equal(z, z3), "another block layout gives other directions"


@pytest.mark.parametrize("name", ZO)
def test_replaying_the_log_reproduces_the_run_bit_for_bit(name):
    """Initial weights + the per-step log entries rebuild the parameters and the optimizer state exactly."""
    model = small_model()
    x, y = mlp_data()
    opt = make_optimizer(name, model.parameters(), lr=1e-2, seed=4, seed_budget=5)
    log = []
    for _ in range(15):
        opt.step(lambda: mlp_loss(model, x, y))
        log.append(opt.last_log_entry)
    replayed = small_model()
    opt2 = make_optimizer(name, replayed.parameters(), lr=1e-2, seed=4, seed_budget=5)
    for entry in log:
        opt2.replay(entry)
    assert torch.equal(flat(replayed), flat(model))
    assert opt2.history == opt.history and opt2.forward_passes == opt.forward_passes
    for p, q in zip(model.parameters(), replayed.parameters()):
        for key, value in opt.state[p].items():
            assert torch.equal(value, opt2.state[q][key])
    wrong = make_optimizer(name, small_model().parameters(), lr=1e-2, seed=5, seed_budget=5)
    with pytest.raises(ValueError, match=r"replay: the log's step 0 has seed"):
        wrong.replay(log[0])


@pytest.mark.parametrize("name", ZO)
def test_worker_threads_give_bit_identical_steps(name, monkeypatch):
    """Blocks are keyed independently, so generating them on several threads changes nothing."""
    monkeypatch.setattr(os, "cpu_count", lambda: 8)  # workers are capped at the cores: have 3 anywhere
    models = [small_model(), small_model()]
    x, y = mlp_data()
    opts = [make_optimizer(name, m.parameters(), lr=1e-2, chunk_size=5, workers=w) for m, w in zip(models, (1, 3))]
    assert opts[0]._pool is None and len(opts[1]._parts) == 3
    for _ in range(12):
        for m, opt in zip(models, opts):
            opt.step(lambda m=m: mlp_loss(m, x, y))
    assert torch.equal(flat(models[0]), flat(models[1]))
    assert opts[0].generated_elements == opts[1].generated_elements


@pytest.mark.parametrize("name", ZO)
def test_a_replaced_parameter_storage_is_the_one_updated(name):
    """``p.data = ...`` after a step (as ``module.to`` does): the next steps move the new storage,
    exactly as a fresh optimizer resumed from the state dict would."""
    model, opt, _ = run(name, 3, seed=2)
    twin, twin_opt, _ = run(name, 3, seed=2)
    x, y = mlp_data()
    for p in model.parameters():
        p.data = p.data.clone()
    old = flat(model)
    for _ in range(3):
        opt.step(lambda: mlp_loss(model, x, y))
        twin_opt.step(lambda: mlp_loss(twin, x, y))
    assert not torch.equal(flat(model), old)
    assert torch.equal(flat(model), flat(twin))


@pytest.mark.parametrize("name", ALL)
def test_step_hooks_and_profiler_scope_behave_as_in_torch(name, monkeypatch):
    """Step hooks fire and the profiler sees ``Optimizer.step#<class>.step``, as with any torch
    optimizer; with neither, the profiler scope (costly on tiny problems) is not entered on a torch the
    shortcut was checked against, and is entered, as torch's own wrapper does, on any other."""
    model = small_model()
    x, y = mlp_data()
    opt = make_optimizer(name, model.parameters(), lr=1e-3)
    closure = lambda: mlp_loss(model, x, y)  # noqa: E731
    scopes = []
    real_scope = torch.autograd.profiler.record_function

    def counting_scope(label, *args):
        scopes.append(label)
        return real_scope(label, *args)

    monkeypatch.setattr(torch.autograd.profiler, "record_function", counting_scope)
    label = f"Optimizer.step#{type(opt).__name__}.step"
    unseen = [] if torch_compat.shortcut_available() else [label]  # no profiler, no hooks
    opt.step(closure)
    assert scopes == unseen

    seen = []
    pre = opt.register_step_pre_hook(lambda o, args, kwargs: seen.append(("pre", o.steps)))
    post = opt.register_step_post_hook(lambda o, args, kwargs: seen.append(("post", o.steps)))
    opt.step(closure)
    assert seen == [("pre", 1), ("post", 2)]
    pre.remove(), post.remove()
    glob = register_optimizer_step_post_hook(lambda o, args, kwargs: seen.append("global"))
    try:
        opt.step(closure)
    finally:
        glob.remove()
    assert seen[-1] == "global"
    scopes.clear()
    opt.step(closure)
    assert scopes == unseen

    scopes.clear()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        opt.step(closure)
    assert scopes == [label]
    assert label in {e.name for e in prof.events()}
    assert opt.steps == 5


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_first_order_hooks_run_once_even_after_torch_wrapped_its_own_class(name):
    """Building a plain torch.optim.Adam makes torch wrap torch.optim.Adam.step with its hooks; the
    library's Adam calls torch's update inside its own step and must not run the hooks twice."""
    plain = torch.nn.Parameter(torch.zeros(2))
    (torch.optim.Adam if name == "adam" else torch.optim.AdamW)([plain])
    model = small_model()
    x, y = mlp_data()
    opt = make_optimizer(name, model.parameters(), lr=1e-3)
    seen = []
    opt.register_step_pre_hook(lambda o, args, kwargs: seen.append(args[1:]))
    opt.register_step_post_hook(lambda o, args, kwargs: seen.append("post"))
    ref_model = small_model()
    reference = (torch.optim.Adam if name == "adam" else torch.optim.AdamW)(ref_model.parameters(), lr=1e-3)
    closure = lambda: mlp_loss(model, x, y)  # noqa: E731
    opt.step(closure)
    assert seen == [(closure,), "post"]
    reference.zero_grad()
    mlp_loss(ref_model, x, y).backward()
    reference.step()
    assert torch.equal(flat(model), flat(ref_model))
