"""load_state_dict checks everything against the registry's specs and changes nothing unless all of it is
valid (issue 12, item 9)."""

import copy
import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optimizers import OPTIMIZERS, NonFiniteLossError, make_optimizer

ALL = list(OPTIMIZERS)
ZO = [n for n in ALL if OPTIMIZERS[n].zeroth_order]


def model(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1)).double()


X = torch.randn(16, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def trained(name, steps=5, seed=0, **hyper):
    m = model(seed)
    opt = make_optimizer(name, m.parameters(), lr=1e-2, seed=seed, **hyper)
    for _ in range(steps):
        opt.step(lambda: m(X).pow(2).mean())
    return m, opt


def snapshot(opt):
    sd = opt.state_dict()
    return copy.deepcopy(sd), {k: getattr(opt, k) for k in ("steps", "forward_passes", "history")}


def same(a, b):
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


def assert_unchanged_after_refusal(name, bad, pattern):
    """Loading ``bad`` raises ValueError matching ``pattern``; the target optimizer is untouched and its
    next steps equal those of a twin that never saw ``bad``."""
    m, opt = trained(name, steps=3, seed=1, seed_budget=3)
    twin_model, twin = trained(name, steps=3, seed=1, seed_budget=3)
    before, counters = snapshot(opt)
    with pytest.raises(ValueError, match=pattern):
        opt.load_state_dict(bad)
    assert same(opt.state_dict(), before)
    assert {k: getattr(opt, k) for k in counters} == counters
    for _ in range(2):
        opt.step(lambda: m(X).pow(2).mean())
        twin.step(lambda: twin_model(X).pow(2).mean())
    assert all(torch.equal(p, q) for p, q in zip(m.parameters(), twin_model.parameters()))


def corrupted(name, edit):
    _, source = trained(name, steps=4, seed=1, seed_budget=3)
    sd = copy.deepcopy(source.state_dict())
    edit(sd)
    return sd


def zo(sd):
    return sd["zeroth_order"]


CASES = [  # (edit, pattern), valid for every ZO optimizer
    (lambda sd: zo(sd)["config"].update(eps=0.0), r"load_state_dict: invalid eps=0.0 \(too small\); allowed: a number > 0"),
    (lambda sd: zo(sd)["config"].update(seed_budget=0), r"invalid seed_budget=0 .*an integer >= 1, or None"),
    (lambda sd: zo(sd)["config"].update(chunk_size=-5), r"invalid chunk_size=-5"),
    (lambda sd: zo(sd)["config"].update(distribution="cauchy"), r"invalid distribution='cauchy'"),
    (lambda sd: zo(sd).update(steps=None), r"invalid steps=None; allowed: an integer >= 0"),
    (lambda sd: zo(sd).update(steps=-1), r"invalid steps=-1"),
    (lambda sd: zo(sd).update(forward_passes=2.5), r"invalid forward_passes=2.5"),
    (lambda sd: zo(sd).update(generated_elements="many"), r"invalid generated_elements='many'"),
    (lambda sd: sd["param_groups"][0].update(lr=math.nan), r"param group 0: invalid lr=nan \(not finite\)"),
    (lambda sd: sd["param_groups"][0].update(weight_decay=-1), r"param group 0: invalid weight_decay=-1"),
    (lambda sd: sd["param_groups"][0].pop("lr"), r"param group 0 lacks 'lr'"),
    (lambda sd: sd["param_groups"][0]["params"].pop(), r"param group 0 lists 3 parameter\(s\) in the state and 4"),
    (lambda sd: sd["param_groups"].append(dict(sd["param_groups"][0])), r"the state has 2 param group\(s\)"),
    (lambda sd: zo(sd).update(history=[(1, math.nan)]), r"history pair 0: invalid seed=1|invalid c=nan"),
    (lambda sd: zo(sd)["history"].__setitem__(-1, (zo(sd)["history"][-1][0], math.inf)), r"invalid c=inf"),
    (lambda sd: zo(sd)["history"].__setitem__(-1, (12345, 1.0)), r"has seed 12345, but with seed=1 and "
                                                                  r"seed_budget=3 step 3 draws"),
    (lambda sd: zo(sd)["history"].__setitem__(-1, (-1, 1.0)), r"invalid seed=-1"),
    (lambda sd: zo(sd).update(history=zo(sd)["history"] * 20), r"the history has \d+ \(seed, c\) pairs; allowed: "
                                                               r"at most"),
    (lambda sd: zo(sd).update(history="abc"), r"invalid history='abc'"),
    (lambda sd: zo(sd).update(shapes=[[4, 3], [4], [4, 1], [1]]), r"parameter layout differs \(trainable tensor 2 "
                                                                  r"has shape \(4, 1\) in the state, \(1, 4\) here\)"),
    (lambda sd: zo(sd).update(shapes=[[4, 3]]), r"1 trainable tensors in the state, 4 here"),
    (lambda sd: zo(sd).update(bogus=1), r"'zeroth_order' has unknown key\(s\) 'bogus'"),
    (lambda sd: zo(sd).pop("history"), r"'zeroth_order' lacks 'history'"),
    (lambda sd: sd.pop("zeroth_order"), r"the state dict lacks 'zeroth_order'"),
    (lambda sd: sd["state"].update({99: {}}), r"'state' has an entry for parameter id 99, which no param group lists"),
]


@pytest.mark.parametrize("name", ZO)
@pytest.mark.parametrize("case", range(len(CASES)))
def test_a_bad_value_is_refused_by_name_and_nothing_changes(name, case):
    edit, pattern = CASES[case]
    assert_unchanged_after_refusal(name, corrupted(name, edit), pattern)


@pytest.mark.parametrize("name,edit,pattern", [
    ("adamezo", lambda sd: zo(sd)["config"].update(betas=(1.0, 0.9)), r"invalid beta1=1.0 .*>= 0 and < 1"),
    ("adamezo", lambda sd: zo(sd)["config"].update(betas=0.9), r"invalid betas=0.9; allowed: a pair"),
    ("adamezo", lambda sd: zo(sd)["config"].update(horizon=0), r"invalid horizon=0"),
    ("adamezo", lambda sd: zo(sd)["config"].update(horizon=2), r"the history has 4 \(seed, c\) pairs; allowed: at "
                                                               r"most 2, the smaller of steps \(4\) and the pairs "
                                                               r"AdaMeZO keeps \(2\)"),
    ("adamezo", lambda sd: zo(sd)["config"].update(warmup="full"), r"invalid warmup='full'"),
    ("adamezo", lambda sd: zo(sd)["config"].update(delta=0), r"invalid delta=0"),
    ("hizoo", lambda sd: zo(sd)["config"].update(hessian_smooth=2.0), r"invalid hessian_smooth=2.0"),
    ("hizoo", lambda sd: sd["state"][0].update(hessian=torch.zeros(4, 3, dtype=torch.float64)),
     r"state of parameter 0: 'hessian': the tensor has an element 0; allowed: > 0"),
    ("hizoo", lambda sd: sd["state"][1].update(hessian=torch.ones(5, dtype=torch.float64)),
     r"'hessian': the tensor has shape \(5,\); allowed: \(4,\)"),
    ("hizoo", lambda sd: sd["state"].pop(2), r"state of parameter 2: the state lacks 'hessian'"),
    ("zo-adam", lambda sd: sd["state"][0]["exp_avg_sq"].fill_(-1.0), r"'exp_avg_sq': the tensor has an element -1"),
    ("zo-adam", lambda sd: sd["state"][0]["exp_avg"].fill_(math.nan), r"'exp_avg': the tensor has non-finite"),
    ("zo-adam", lambda sd: sd["state"][3].update(step=torch.tensor(1.5)), r"'step' is 1.5; allowed: a whole number"),
    ("zo-adam", lambda sd: sd["state"].pop(3), r"3 of the 4 trained parameters have moments"),
    ("zo-adam", lambda sd: sd["state"][0].update(extra=torch.zeros(1)), r"the state has unknown key\(s\) 'extra'"),
    ("mezo", lambda sd: sd["state"].update({0: {"exp_avg": torch.zeros(4, 3)}}),
     r"MeZO keeps no per-parameter state, but the state has 'exp_avg'"),
])
def test_method_specific_values_are_checked(name, edit, pattern):
    assert_unchanged_after_refusal(name, corrupted(name, edit), pattern)


@pytest.mark.parametrize("source", ALL)
@pytest.mark.parametrize("target", ZO)
def test_another_optimizers_state_is_refused(source, target):
    if source == target:
        return
    _, other = trained(source, steps=2)
    sd = other.state_dict()
    pattern = (r"first-order optimizer's state" if not OPTIMIZERS[source].zeroth_order
               else rf"this is the state of '{type(other).__name__}', not of {type(make_optimizer(target, [torch.nn.Parameter(torch.zeros(1))])).__name__}")
    assert_unchanged_after_refusal(target, sd, pattern)
    if OPTIMIZERS[source].zeroth_order:  # a state saved before the class name was recorded: its settings differ
        legacy = copy.deepcopy(sd)
        del legacy["zeroth_order"]["optimizer"]
        if set(legacy["zeroth_order"]["config"]) != set(trained(target, steps=0)[1].state_dict()["zeroth_order"]["config"]):
            assert_unchanged_after_refusal(target, legacy, r"the state's settings \(.*\) are not .*: it is another "
                                                           r"optimizer's state")


@pytest.mark.parametrize("name", ZO)
def test_a_legacy_state_without_name_or_shapes_still_loads(name):
    _, source = trained(name, steps=4, seed=1, seed_budget=3)
    sd = copy.deepcopy(source.state_dict())
    del sd["zeroth_order"]["optimizer"], sd["zeroth_order"]["shapes"]
    _, target = trained(name, steps=1, seed=7)
    target.load_state_dict(sd)
    assert target.history == source.history and target.steps == 4 and target.seed == 1


@pytest.mark.parametrize("name,edit,pattern", [
    ("adam", lambda sd: sd["first_order"].update(steps=None), r"Adam.load_state_dict: invalid steps=None"),
    ("adam", lambda sd: sd["param_groups"][0].update(lr=math.nan), r"param group 0: invalid lr=nan"),
    ("adamw", lambda sd: sd["param_groups"][0].update(betas=(0.9, 1.5)), r"param group 0: invalid beta2=1.5"),
    ("adamw", lambda sd: sd["param_groups"][0].update(eps=0.0), r"param group 0: invalid eps=0.0"),
    ("adam", lambda sd: sd["state"][0].update(exp_avg=torch.zeros(2, 2)), r"'exp_avg': the tensor has shape"),
    ("adam", lambda sd: sd.update(zeroth_order={}), r"this is a zeroth-order optimizer's state, not Adam's"),
])
def test_first_order_states_are_checked_too(name, edit, pattern):
    assert_unchanged_after_refusal(name, corrupted(name, edit), pattern)


@pytest.mark.parametrize("name", ["zo-adam", "hizoo", "adam"])
def test_low_precision_state_stays_float32_through_a_round_trip(name):
    """torch's loader casts state to the parameter's dtype; float16 moments would bring the NaNs back."""
    p = torch.nn.Parameter(torch.linspace(-1, 1, 8).to(torch.float16))
    opt = make_optimizer(name, [p], lr=1e-2)
    for _ in range(3):
        opt.step(lambda: (p.float() ** 2).sum())
    sd = copy.deepcopy(opt.state_dict())
    q = torch.nn.Parameter(p.detach().clone())
    opt2 = make_optimizer(name, [q], lr=1e-2)
    opt2.load_state_dict(sd)
    for key, value in opt.state[p].items():
        assert opt2.state[q][key].dtype == value.dtype and torch.equal(opt2.state[q][key], value)
    opt.step(lambda: (p.float() ** 2).sum())
    opt2.step(lambda: (q.float() ** 2).sum())
    assert torch.equal(p, q)


JUNK = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True),
                 st.text(max_size=5), st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=2),
                 st.integers(), max_size=2), st.just(torch.tensor([1.0, math.nan])))


def leaf_paths(value, path=()):
    if isinstance(value, dict):
        for k, v in value.items():
            yield from leaf_paths(v, path + (k,))
    elif isinstance(value, (list, tuple)) and value:
        for i, v in enumerate(value):
            yield from leaf_paths(v, path + (i,))
    yield path


def replace_at(value, path, new):
    if not path:
        return new
    key, rest = path[0], path[1:]
    if isinstance(value, tuple):
        value = list(value)
    value[key] = replace_at(value[key], rest, new)
    return value


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(ZO + ["adam"]), pick=st.integers(0, 10**6), junk=JUNK)
def test_any_corrupted_value_gives_a_value_error_or_a_consistent_load(name, pick, junk):
    """Replace any one value of a real state dict by junk: load_state_dict either raises ValueError and
    changes nothing, or loads a state that the optimizer can step from and that round-trips."""
    _, source = trained(name, steps=4, seed=1, seed_budget=3) if name != "adam" else trained(name, steps=4)
    sd = copy.deepcopy(source.state_dict())
    paths = list(leaf_paths(sd))
    path = paths[pick % len(paths)]
    bad = replace_at(sd, path, junk)
    m, target = trained(name, steps=2, seed=1) if name != "adam" else trained(name, steps=2)
    before, _ = snapshot(target)
    try:
        target.load_state_dict(bad)
    except ValueError:
        assert same(target.state_dict(), before), path
        return
    try:
        target.step(lambda: m(X).pow(2).mean())
    except NonFiniteLossError:  # a valid but extreme value (eps = 1e153) may make the loss overflow
        pass
    assert all(bool(torch.isfinite(p).all()) for p in m.parameters())


@pytest.mark.parametrize("name", ZO)
@pytest.mark.parametrize("entry", [(0, math.nan), (0, math.inf), ("x", 1.0), (0,), None])
def test_replay_refuses_a_log_entry_that_is_not_finite(name, entry):
    p = torch.nn.Parameter(torch.ones(3))
    opt = make_optimizer(name, [p])
    if name == "hizoo" and isinstance(entry, tuple) and len(entry) == 2:
        entry = entry + (1.0,)
    with pytest.raises(ValueError, match=r"replay: invalid"):
        opt.replay(entry)
    assert torch.equal(p.detach(), torch.ones(3)) and opt.steps == 0
