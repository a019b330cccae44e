"""Custom formulas: a whitelist over Python's ast, never eval'd. Hostile text gives a clean ValueError."""

import math
import string

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from landscapes import MAX_LENGTH, Landscape, custom, from_recipe
from landscapes.formula import FUNCTIONS, compile_formula, to_latex

DOMAIN = ((-2.0, 2.0), (-2.0, 2.0))


def value(expr, x, y):
    return float(compile_formula(expr)(torch.tensor([x, y], dtype=torch.float64)))


def test_spec_example_builds_a_landscape():
    ls = custom("x**2 + 10*y**2", domain=((-2, 2), (-2, 2)), start=(1.5, 1.5))
    assert isinstance(ls, Landscape)
    assert ls(1.5, 1.5) == pytest.approx(1.5**2 + 10 * 1.5**2)
    assert ls.start == (1.5, 1.5) and ls.domain == DOMAIN
    assert ls.formula == r"x^{2} + 10 \cdot y^{2}"
    # the minimum is estimated numerically: (0, 0, 0)
    (mx, my, mf), = ls.minima
    assert abs(mx) < 1e-5 and abs(my) < 1e-5 and mf < 1e-9
    assert ls.params["minima_estimated"] is True
    # differentiable by autograd
    p = torch.tensor([1.0, -0.5], dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(ls.f(p), p)
    assert g.tolist() == pytest.approx([2.0, -10.0])


@pytest.mark.parametrize("expr, x, y, expected", [
    ("x + y*2 - 3/4", 1.0, 2.0, 1 + 4 - 0.75),
    ("x ** 2 ** 2", 2.0, 0.0, 16.0),            # right-associative
    ("-x**2", 3.0, 0.0, -9.0),                  # unary minus binds looser than **
    ("x^2 + y^2", 3.0, 4.0, 25.0),              # ^ is power
    ("x − y", 3.0, 4.0, -1.0),                  # unicode minus
    ("sin(pi*x) + cos(0*y) + e", 0.5, 1.0, 1.0 + 1.0 + math.e),
    ("exp(log(x)) + sqrt(abs(y)) + tanh(0)", 2.0, -9.0, 5.0),
    ("atan2(y, x) + max(x, y) + min(x, y) + hypot(x, y)", 3.0, 4.0, math.atan2(4, 3) + 7 + 5),
    ("log10(100) + log2(8) + log1p(0) + expm1(0) + sign(-y)", 0.0, 2.0, 5.0 - 1.0),
    ("sigmoid(0) + softplus(0) + erf(0) + sinh(0) + cosh(0) + tan(0) + asin(0) + acos(1) + atan(0)",
     0.0, 0.0, 0.5 + math.log(2) + 1.0),
    ("1e-3 * x + 2.5", 1000.0, 0.0, 3.5),
    ("7", 0.3, 0.2, 7.0),
])
def test_allowed_formulas_evaluate_correctly(expr, x, y, expected):
    assert value(expr, x, y) == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_constant_formula_broadcasts_and_keeps_an_autograd_link():
    f = compile_formula("3")
    assert f(torch.zeros(4, 2, dtype=torch.float64)).tolist() == [3.0] * 4
    p = torch.tensor([0.5, 0.5], dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(f(p), p)
    assert g.tolist() == [0.0, 0.0]


@pytest.mark.parametrize("expr, message", [
    ("__import__('os').system('ls')", "attribute access"),
    ("__import__('os')", "calling '__import__' is not allowed"),
    ("x.real", r"attribute access \(a.b\) is not allowed"),
    ("().__class__", "attribute access"),
    ("torch.sin(x)", "attribute access"),
    ("open('f')", "calling 'open' is not allowed"),
    ("eval('1')", "calling 'eval' is not allowed"),
    ("z + 1", "the name 'z' is not allowed"),
    ("os", "the name 'os' is not allowed"),
    ("sin", "the function 'sin' must be called"),
    ("'abc'", "strings are not allowed"),
    ("f'{x}'", "strings are not allowed"),
    ("b'x'", "strings are not allowed"),
    ("lambda: 1", "lambda functions are not allowed"),
    ("[x for x in (1,)]", "comprehensions are not allowed"),
    ("sum(i for i in (1, 2))", "calling 'sum' is not allowed"),
    ("x if y else 1", "conditional expressions are not allowed"),
    ("x < y", "comparisons are not allowed"),
    ("x and y", "boolean operators"),
    ("not x", "the operator not is not allowed"),
    ("x % 2", "the operator % is not allowed"),
    ("x // 2", "the operator // is not allowed"),
    ("x @ y", "the operator @ is not allowed"),
    ("x[0]", "subscripts"),
    ("(x, y)", "tuples are not allowed"),
    ("[x]", "lists are not allowed"),
    ("{x: 1}", "dictionaries are not allowed"),
    ("(y := 2)", "assignment expressions"),
    ("sin(*x)", "starred arguments"),
    ("sin(x=1)", "keyword arguments are not allowed"),
    ("sin(x, y)", "sin takes 1 argument, got 2"),
    ("atan2(x)", "atan2 takes 2 arguments, got 1"),
    ("(sin)(x)(y)", "calling an expression is not allowed"),
    ("True + x", "the constant True is not allowed"),
    ("None", "the constant None is not allowed"),
    ("1j * x", "complex numbers are not allowed"),
    ("1e999 * x", "a number is too large"),
    ("2e308", "a number is too large"),
    ("x = 1", "not a valid expression"),
    ("import os", "not a valid expression"),
    ("x +", "not a valid expression"),
    ("", "it is empty"),
    ("   ", "it is empty"),
    ("x" + " + x" * 100, "too long"),
    ("+".join(["x"] * 120), "too complex"),
    ("-" * 120 + "x", "nested too deeply|too complex"),
])
def test_disallowed_formulas_raise_value_errors_that_say_why(expr, message):
    with pytest.raises(ValueError, match=message) as info:
        custom(expr, DOMAIN, (1.0, 1.0))
    assert "Allowed:" in str(info.value) or "expected text" in str(info.value)


def test_non_text_and_bad_domain_or_start_are_value_errors():
    with pytest.raises(ValueError, match="expected text, got int"):
        custom(3, DOMAIN, (0, 0))
    with pytest.raises(ValueError, match="x0 < x1"):
        custom("x", ((1, -1), (0, 1)), (0, 0.5))
    with pytest.raises(ValueError, match="domain must be"):
        custom("x", "big", (0, 0))
    with pytest.raises(ValueError, match="inside the domain"):
        custom("x", DOMAIN, (5, 0))
    with pytest.raises(ValueError, match="not finite at the start"):
        custom("log(x)", DOMAIN, (-1.0, 0.0))
    with pytest.raises(ValueError, match="not finite at the start"):
        custom("1/x", DOMAIN, (0.0, 0.0))
    assert len("x" * MAX_LENGTH) == MAX_LENGTH
    with pytest.raises(ValueError, match=f"at most {MAX_LENGTH}"):
        custom("x" * (MAX_LENGTH + 1), DOMAIN, (0, 0))


def test_overflow_and_nan_regions_are_safe_in_grids():
    ls = custom("exp(x*1000) + sqrt(y)", DOMAIN, (-1.0, 1.0))
    xs, ys, Z = ls.grid(21)
    assert np.isnan(Z).any() and not np.isinf(Z).any()
    assert np.isfinite(ls.colour_values(Z)[np.isfinite(Z)]).all()
    # the estimated minimum is finite and inside the domain
    (mx, my, mf), = ls.minima
    assert ls.contains((mx, my)) and math.isfinite(mf)


def test_latex_rendering_and_recipe_round_trip():
    assert to_latex("(x+y)**2/(1+x^2)") == r"\frac{\left(x + y\right)^{2}}{1 + x^{2}}"
    assert to_latex("-(x-y)**-2") == r"-\left(x - y\right)^{-2}"
    assert to_latex("x-(y-x)") == r"x - \left(y - x\right)"
    assert to_latex("sqrt(abs(x))*pi") == r"\sqrt{\left|x\right|} \cdot \pi"
    ls = custom("x^2 + 3*y^2", DOMAIN, (1.0, 1.0), minima=[(0, 0, 0)])
    assert ls.minima == ((0.0, 0.0, 0.0),) and ls.params["minima_estimated"] is False
    again = from_recipe(ls.recipe)
    assert again(0.7, -0.2) == ls(0.7, -0.2) and again.start == ls.start


def test_log_scale_is_chosen_from_the_values():
    assert custom("(1-x)**2 + 100*(y-x**2)**2", DOMAIN, (-1.5, 1.5)).log_scale is True
    assert custom("sin(3*x) + cos(3*y)", DOMAIN, (1.0, 1.0)).log_scale is False


# ----------------------------------------------------------------------------------- property-based
ALPHABET = string.ascii_letters + string.digits + " +-*/^().,_'\"[]{}:;=<>!@#$%&|~`?\\\n\t" + "−×·é∑\x00"
TOKENS = ["x", "y", "pi", "e", "1", "2.5", "1e308", "0", "+", "-", "*", "/", "**", "^", "(", ")", ",",
          *FUNCTIONS, "__import__", "os", "system", ".", "__class__", "lambda", ":", "[", "]", "for", "in",
          "'s'", "if", "else", "<", "and", "not", "=", "9" * 30, "eval", "exec", "getattr", " "]


def check_outcome(text: str) -> None:
    try:
        ls = custom(text, DOMAIN, (0.5, -0.5))
    except ValueError as exc:
        assert str(exc), "a ValueError must say what is wrong"
        return
    # a valid landscape: finite at the start, evaluates on a grid and a trajectory-shaped batch
    assert isinstance(ls, Landscape)
    assert math.isfinite(ls(0.5, -0.5))
    xs, ys, Z = ls.grid(9)
    assert Z.shape == (9, 9) and not np.isinf(Z).any()
    out = ls.f(torch.zeros(3, 2, dtype=torch.float64))
    assert out.shape == (3,)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=ALPHABET, max_size=60))
def test_random_text_gives_a_value_error_or_a_valid_landscape(text):
    check_outcome(text)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(TOKENS), max_size=25))
def test_random_token_soup_gives_a_value_error_or_a_valid_landscape(tokens):
    check_outcome(" ".join(tokens))


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=400))
def test_arbitrary_unicode_gives_a_value_error_or_a_valid_landscape(text):
    check_outcome(text)


LEAVES = st.sampled_from(["x", "y", "pi", "e", "0", "1", "2", "0.5", "10", "1e3"])
UNARY = [name for name, (_, arity, _) in FUNCTIONS.items() if arity == 1]
BINARY = [name for name, (_, arity, _) in FUNCTIONS.items() if arity == 2]


def _grow(children):
    return st.one_of(
        st.tuples(children, st.sampled_from(["+", "-", "*", "/", "**"]), children).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        st.tuples(st.sampled_from(UNARY), children).map(lambda t: f"{t[0]}({t[1]})"),
        st.tuples(st.sampled_from(BINARY), children, children).map(lambda t: f"{t[0]}({t[1]}, {t[2]})"),
        children.map(lambda c: f"-{c}"),
    )


VALID = st.recursive(LEAVES, _grow, max_leaves=12)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(VALID)
def test_well_formed_formulas_give_a_landscape_or_say_why_not(text):
    if len(text) > MAX_LENGTH:
        with pytest.raises(ValueError, match="too long"):
            custom(text, DOMAIN, (0.5, -0.5))
        return
    try:
        ls = custom(text, DOMAIN, (0.5, -0.5))
    except ValueError as exc:  # the only allowed reasons for a well-formed formula
        assert "not finite at the start" in str(exc) or "too complex" in str(exc) or "nested" in str(exc)
        return
    assert math.isfinite(ls(0.5, -0.5))
    assert ls(0.5, -0.5) == pytest.approx(float(ls.f(torch.tensor([[0.5, -0.5]], dtype=torch.float64))[0]))
