"""Bad input gets a ValueError that names what was wrong and what is allowed."""

import math

import pytest
import torch

from optimizers import OPTIMIZERS, AdaMeZO, HiZOO, MeZO, NonFiniteLossError, ZOAdam, make_optimizer
from optimizers.first_order import Adam

ALL = list(OPTIMIZERS)
ZO = [n for n in ALL if OPTIMIZERS[n].zeroth_order]


def param():
    return torch.nn.Parameter(torch.tensor([1.0, -1.0], dtype=torch.float64))


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("lr", [0.0, -1e-3, math.nan, math.inf, "fast"])
def test_bad_lr(name, lr):
    with pytest.raises(ValueError, match=r"invalid lr=") as info:
        make_optimizer(name, [param()], lr=lr)
    assert "allowed: a number > 0" in str(info.value)


@pytest.mark.parametrize("name", ZO)
@pytest.mark.parametrize("eps", [0.0, -1.0])
def test_bad_eps(name, eps):
    with pytest.raises(ValueError, match=r"invalid eps=.*allowed: a number > 0"):
        make_optimizer(name, [param()], eps=eps)


@pytest.mark.parametrize("name", ["adamezo", "zo-adam", "adam", "adamw"])
@pytest.mark.parametrize("which,value", [("beta1", 1.0), ("beta1", -0.1), ("beta2", 1.5), ("beta2", 1.0)])
def test_bad_beta(name, which, value):
    with pytest.raises(ValueError, match=rf"invalid {which}={value}.*allowed: a number >= 0 and < 1"):
        make_optimizer(name, [param()], **{which: value})


@pytest.mark.parametrize("cls", [AdaMeZO, ZOAdam, Adam])
def test_bad_betas_tuple_on_the_class(cls):
    with pytest.raises(ValueError, match=r"invalid beta2=1.0"):
        cls([param()], betas=(0.9, 1.0))
    with pytest.raises(ValueError, match=r"invalid betas=0.9.*a pair"):
        cls([param()], betas=0.9)


@pytest.mark.parametrize("horizon", [0, -3, 2.5])
def test_bad_horizon(horizon):
    with pytest.raises(ValueError, match=rf"invalid horizon={horizon}.*allowed: an integer >= 1"):
        AdaMeZO([param()], horizon=horizon)


@pytest.mark.parametrize("name", ZO)
@pytest.mark.parametrize("chunk_size", [0, -1])
def test_bad_chunk_size(name, chunk_size):
    with pytest.raises(ValueError, match=rf"invalid chunk_size={chunk_size}.*an integer >= 1"):
        make_optimizer(name, [param()], chunk_size=chunk_size)


@pytest.mark.parametrize("kwargs,pattern", [
    ({"seed_budget": 0}, r"invalid seed_budget=0.*an integer >= 1, or None"),
    ({"seed": -1}, r"invalid seed=-1"),
    ({"delta": 0.0}, r"invalid delta=0.0"),
    ({"weight_decay": -0.1}, r"invalid weight_decay=-0.1"),
    ({"warmup": "full"}, r"invalid warmup='full'.*one of 'partial', 'mezo'"),
    ({"warmup_lr_scale": 0.0}, r"invalid warmup_lr_scale=0.0 \(too small\); allowed: a number > 0"),
    ({"num_directions": 2.5}, r"invalid num_directions=2.5 \(not an integer\); allowed: an integer >= 1"),
    ({"distribution": "uniform"}, r"invalid distribution='uniform'.*'gaussian', 'rademacher'"),
    ({"momentum": 0.9}, r"unknown hyperparameter 'momentum'; allowed: .*beta1"),
    ({"betas": (0.9, 0.9), "beta1": 0.5}, r"either betas or beta1/beta2"),
])
def test_other_bad_hyperparameters(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        make_optimizer("adamezo", [param()], **kwargs)


def test_bad_hessian_smooth():
    with pytest.raises(ValueError, match=r"invalid hessian_smooth=-1e-08"):
        HiZOO([param()], hessian_smooth=-1e-8)


def test_bad_group_lr():
    with pytest.raises(ValueError, match=r"MeZO: invalid lr=-1"):
        MeZO([{"params": [param()], "lr": -1}])


def test_unknown_optimizer_name():
    with pytest.raises(ValueError, match=rf"unknown optimizer 'sgd'; allowed: {', '.join(OPTIMIZERS)}$"):
        make_optimizer("sgd", [param()])


@pytest.mark.parametrize("name", ALL)
def test_closure_returning_a_non_scalar(name):
    p = param()
    opt = make_optimizer(name, [p])
    with pytest.raises(ValueError, match=r"closure must return a scalar loss, got a tensor of shape \(2,\)"):
        opt.step(lambda: p * 2)


@pytest.mark.parametrize("name", ALL)
def test_closure_returning_something_else(name):
    opt = make_optimizer(name, [param()])
    with pytest.raises(ValueError, match=r"closure must return a scalar loss tensor, got str"):
        opt.step(lambda: "0.5")
    with pytest.raises(ValueError, match=r"needs a closure"):
        opt.step()


@pytest.mark.parametrize("bad", [math.nan, math.inf])
@pytest.mark.parametrize("name,when", [(n, w) for n in ALL for w in range(OPTIMIZERS[n].forward_passes_per_step)])
def test_non_finite_loss_leaves_parameters_unchanged(name, bad, when):
    """A failed step (at any of its forward passes) raises NonFiniteLossError and leaves θ and the history as they were."""
    p = param()
    opt = make_optimizer(name, [p], lr=1e-2)
    opt.step(lambda: (p**2).sum())
    before, history = p.detach().clone(), opt.history
    calls = []

    def closure():
        calls.append(1)
        loss = (p**2).sum()
        return loss * bad if len(calls) > when else loss

    with pytest.raises(NonFiniteLossError, match=r"non-finite loss \((nan|inf)\)"):
        opt.step(closure)
    torch.testing.assert_close(p.detach(), before, rtol=0, atol=1e-15)
    assert opt.history == history
    assert isinstance(NonFiniteLossError("x"), ValueError)


def test_first_order_loss_without_graph():
    p = param()
    opt = make_optimizer("adam", [p])
    with pytest.raises(ValueError, match=r"does not depend on the parameters through autograd"):
        opt.step(lambda: (p.detach() ** 2).sum())


def test_param_groups_are_fixed():
    opt = MeZO([param()])
    with pytest.raises(ValueError, match=r"param groups are fixed at construction"):
        opt.add_param_group({"params": [param()]})


@pytest.mark.parametrize("name", ALL)
def test_registry_specs_validate_their_own_defaults(name):
    entry = OPTIMIZERS[name]
    for spec in entry.specs.values():
        assert spec.validate(spec.default) == spec.default
        assert spec.help, f"{name}.{spec.name} needs a help line"
    opt = make_optimizer(name, [param()], **{k: v for k, v in entry.defaults().items() if v is not None})
    assert isinstance(opt, entry.cls)
