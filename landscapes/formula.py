"""Custom landscapes from a formula in x and y, parsed safely (never ``eval``'d).

The text is parsed with :func:`ast.parse` in ``"eval"`` mode and every node is checked against a
whitelist, then compiled into a tree of torch operations (Python closures, no ``eval``/``exec``/
``compile`` of user text). Allowed:

- numbers (finite int or float literals), the variables ``x`` and ``y``, the constants ``pi`` and ``e``;
- ``+ - * / **`` (``^`` is read as ``**``; ``−`` as ``-``; ``×``/``·`` as ``*``), unary ``+``/``-``,
  parentheses;
- calls of the functions in :data:`FUNCTIONS` by name, with positional arguments only.

Everything else (attribute access, subscripts, other names, calls of anything else, keywords,
strings, comparisons, boolean operators, conditional expressions, comprehensions, lambdas, ``:=``,
starred arguments, f-strings, ...) raises ``ValueError`` saying what is not allowed. Text is capped at
:data:`MAX_LENGTH` characters and :data:`MAX_NODES` syntax nodes.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from .landscape import Domain, Landscape, Point, check_domain, check_point

Tensor = torch.Tensor
MAX_LENGTH = 300
MAX_NODES = 200
MAX_DEPTH = 60


def _sigmoid(a: Tensor) -> Tensor:
    return torch.sigmoid(a)


# name -> (torch function, number of arguments, LaTeX template with {0}, {1})
FUNCTIONS: dict[str, tuple[Callable[..., Tensor], int, str]] = {
    "sin": (torch.sin, 1, r"\sin\left({0}\right)"),
    "cos": (torch.cos, 1, r"\cos\left({0}\right)"),
    "tan": (torch.tan, 1, r"\tan\left({0}\right)"),
    "asin": (torch.asin, 1, r"\arcsin\left({0}\right)"),
    "acos": (torch.acos, 1, r"\arccos\left({0}\right)"),
    "atan": (torch.atan, 1, r"\arctan\left({0}\right)"),
    "atan2": (torch.atan2, 2, r"\operatorname{{atan2}}\left({0}, {1}\right)"),
    "sinh": (torch.sinh, 1, r"\sinh\left({0}\right)"),
    "cosh": (torch.cosh, 1, r"\cosh\left({0}\right)"),
    "tanh": (torch.tanh, 1, r"\tanh\left({0}\right)"),
    "exp": (torch.exp, 1, r"\exp\left({0}\right)"),
    "log": (torch.log, 1, r"\log\left({0}\right)"),
    "log2": (torch.log2, 1, r"\log_2\left({0}\right)"),
    "log10": (torch.log10, 1, r"\log_{{10}}\left({0}\right)"),
    "log1p": (torch.log1p, 1, r"\log\left(1 + {0}\right)"),
    "expm1": (torch.expm1, 1, r"\left(e^{{{0}}} - 1\right)"),
    "sqrt": (torch.sqrt, 1, r"\sqrt{{{0}}}"),
    "abs": (torch.abs, 1, r"\left|{0}\right|"),
    "sign": (torch.sign, 1, r"\operatorname{{sign}}\left({0}\right)"),
    "sigmoid": (_sigmoid, 1, r"\sigma\left({0}\right)"),
    "softplus": (torch.nn.functional.softplus, 1, r"\operatorname{{softplus}}\left({0}\right)"),
    "erf": (torch.erf, 1, r"\operatorname{{erf}}\left({0}\right)"),
    "min": (torch.minimum, 2, r"\min\left({0}, {1}\right)"),
    "max": (torch.maximum, 2, r"\max\left({0}, {1}\right)"),
    "hypot": (torch.hypot, 2, r"\sqrt{{{0}^2 + {1}^2}}"),
}
CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e}
VARIABLES = ("x", "y")

_BINOPS: dict[type, tuple[Callable[[Any, Any], Any], str]] = {
    ast.Add: (torch.add, "+"), ast.Sub: (torch.sub, "-"), ast.Mult: (torch.mul, "*"),
    ast.Div: (torch.div, "/"), ast.Pow: (torch.pow, "**"),
}
_PRECEDENCE = {ast.Add: 1, ast.Sub: 1, ast.Mult: 2, ast.Div: 2, ast.Pow: 4}
_UNARY_PRECEDENCE = 3

# What a rejected node is, in words, for the error message.
_NODE_WORDS: dict[type, str] = {
    ast.Attribute: "attribute access (a.b)", ast.Subscript: "subscripts (a[i])", ast.Slice: "slices",
    ast.Lambda: "lambda functions", ast.ListComp: "comprehensions", ast.SetComp: "comprehensions",
    ast.DictComp: "comprehensions", ast.GeneratorExp: "comprehensions and generator expressions",
    ast.Compare: "comparisons", ast.BoolOp: "boolean operators (and, or)", ast.IfExp: "conditional expressions",
    ast.JoinedStr: "strings", ast.FormattedValue: "strings", ast.List: "lists", ast.Tuple: "tuples",
    ast.Set: "sets", ast.Dict: "dictionaries", ast.Starred: "starred arguments (*a)",
    ast.NamedExpr: "assignment expressions (:=)", ast.Await: "await", ast.Yield: "yield",
    ast.YieldFrom: "yield",
}
_ALLOWED_TEXT = ("numbers, x, y, pi, e, + - * / ** (or ^), parentheses and the functions "
                 + ", ".join(FUNCTIONS))


class FormulaError(ValueError):
    """A formula that is not allowed or does not give a usable landscape."""


def _fail(why: str) -> FormulaError:
    return FormulaError(f"invalid formula: {why}. Allowed: {_ALLOWED_TEXT}.")


def normalize(text: Any) -> str:
    """The formula text with the accepted spellings mapped to Python's (``^`` -> ``**``, ``−`` -> ``-``)."""
    if not isinstance(text, str):
        raise FormulaError(f"invalid formula: expected text, got {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise _fail(f"it is too long ({len(text)} characters; at most {MAX_LENGTH})")
    text = text.replace("^", "**").replace("−", "-").replace("×", "*").replace("·", "*").strip()
    if not text:
        raise _fail("it is empty")
    return text


def parse(text: Any) -> ast.expr:
    """Parse and check ``text``; return the checked expression tree or raise ``ValueError``."""
    source = normalize(text)
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as exc:
        raise _fail(f"it is not a valid expression ({exc.msg})") from None
    except (ValueError, RecursionError, MemoryError, OverflowError) as exc:
        raise _fail(f"it could not be parsed ({type(exc).__name__})") from None
    count = sum(1 for _ in ast.walk(tree))
    if count > MAX_NODES:
        raise _fail(f"it is too complex ({count} syntax nodes; at most {MAX_NODES})")
    _check(tree.body, 0)
    return tree.body


def _check(node: ast.AST, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise _fail(f"it is nested too deeply (more than {MAX_DEPTH} levels)")
    if isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, bool) or value is None or value is Ellipsis:
            raise _fail(f"the constant {value!r} is not allowed (only numbers)")
        if isinstance(value, (str, bytes)):
            raise _fail("strings are not allowed")
        if isinstance(value, complex):
            raise _fail("complex numbers are not allowed")
        if not isinstance(value, (int, float)):
            raise _fail(f"the constant {value!r} is not allowed (only numbers)")
        try:
            as_float = float(value)
        except OverflowError:
            raise _fail("a number is too large") from None
        if not math.isfinite(as_float):
            raise _fail("a number is too large (numbers must be finite)")
        return
    if isinstance(node, ast.Name):
        if node.id in VARIABLES or node.id in CONSTANTS:
            return
        if node.id in FUNCTIONS:
            raise _fail(f"the function {node.id!r} must be called, as in {node.id}(x)")
        raise _fail(f"the name {node.id!r} is not allowed (names: x, y, pi, e)")
    if isinstance(node, ast.BinOp):
        if type(node.op) not in _BINOPS:
            raise _fail(f"the operator {_op_text(node.op)} is not allowed (operators: + - * / **)")
        _check(node.left, depth + 1)
        _check(node.right, depth + 1)
        return
    if isinstance(node, ast.UnaryOp):
        if not isinstance(node.op, (ast.UAdd, ast.USub)):
            raise _fail(f"the operator {_op_text(node.op)} is not allowed (operators: + - * / **)")
        _check(node.operand, depth + 1)
        return
    if isinstance(node, ast.Call):
        func = node.func
        if not isinstance(func, ast.Name):
            what = "attribute access (a.b)" if isinstance(func, ast.Attribute) else "calling an expression"
            raise _fail(f"{what} is not allowed; only the listed functions can be called, by name")
        if func.id not in FUNCTIONS:
            raise _fail(f"calling {func.id!r} is not allowed; functions: {', '.join(FUNCTIONS)}")
        if node.keywords:
            raise _fail(f"keyword arguments are not allowed (in {func.id}(...))")
        arity = FUNCTIONS[func.id][1]
        if any(isinstance(a, ast.Starred) for a in node.args):
            raise _fail("starred arguments (*a) are not allowed")
        if len(node.args) != arity:
            raise _fail(f"{func.id} takes {arity} argument{'s' if arity > 1 else ''}, got {len(node.args)}")
        for arg in node.args:
            _check(arg, depth + 1)
        return
    words = _NODE_WORDS.get(type(node), f"{type(node).__name__} expressions")
    raise _fail(f"{words} {'are' if words.endswith('s') or 'and' in words else 'is'} not allowed")


def _op_text(op: ast.AST) -> str:
    return {ast.Mod: "%", ast.FloorDiv: "//", ast.MatMult: "@", ast.BitAnd: "&", ast.BitOr: "|",
            ast.BitXor: "^", ast.LShift: "<<", ast.RShift: ">>", ast.Invert: "~", ast.Not: "not"
            }.get(type(op), type(op).__name__)


# --------------------------------------------------------------------------------- compile
Node = Callable[[Tensor, Tensor], Tensor]


def _compile(node: ast.expr) -> Node:
    """A closure computing ``node`` from the tensors x and y with torch operations."""
    if isinstance(node, ast.Constant):
        c = torch.tensor(float(node.value), dtype=torch.float64)
        return lambda x, y: c
    if isinstance(node, ast.Name):
        if node.id == "x":
            return lambda x, y: x
        if node.id == "y":
            return lambda x, y: y
        c = torch.tensor(CONSTANTS[node.id], dtype=torch.float64)
        return lambda x, y: c
    if isinstance(node, ast.BinOp):
        op = _BINOPS[type(node.op)][0]
        left, right = _compile(node.left), _compile(node.right)
        return lambda x, y: op(left(x, y), right(x, y))
    if isinstance(node, ast.UnaryOp):
        operand = _compile(node.operand)
        if isinstance(node.op, ast.USub):
            return lambda x, y: torch.neg(operand(x, y))
        return operand
    if isinstance(node, ast.Call):
        fn = FUNCTIONS[node.func.id][0]  # type: ignore[union-attr]
        args = [_compile(a) for a in node.args]
        if len(args) == 1:
            (a,) = args
            return lambda x, y: fn(a(x, y))
        a, b = args
        return lambda x, y: fn(a(x, y), b(x, y))
    raise _fail(f"{type(node).__name__} is not allowed")  # unreachable after _check


def compile_formula(text: str) -> Callable[[Tensor], Tensor]:
    """Parse, check and compile ``text`` into ``f(p)`` for ``p`` of shape ``[..., 2]`` (float64)."""
    body = _compile(parse(text))

    def f(p: Tensor) -> Tensor:
        x, y = p[..., 0], p[..., 1]
        out = body(x, y)
        if out.shape != x.shape or (x.requires_grad and not out.requires_grad):
            out = out + x * 0  # a formula without x and y: keep the shape and the autograd link
        return out

    return f


# --------------------------------------------------------------------------------- LaTeX
def to_latex(text: str) -> str:
    """The checked formula in LaTeX, for display."""
    return _latex(parse(text))[0]


def _latex(node: ast.expr) -> tuple[str, int]:
    """(LaTeX, precedence) of ``node``; atoms have precedence 9."""
    if isinstance(node, ast.Constant):
        v = node.value
        return (f"{v:g}" if isinstance(v, float) else str(v)), 9
    if isinstance(node, ast.Name):
        return (r"\pi" if node.id == "pi" else node.id), 9
    if isinstance(node, ast.UnaryOp):
        inner, prec = _latex(node.operand)
        if prec < _UNARY_PRECEDENCE + 1:
            inner = rf"\left({inner}\right)"
        return ("-" if isinstance(node.op, ast.USub) else "+") + inner, _UNARY_PRECEDENCE
    if isinstance(node, ast.Call):
        template = FUNCTIONS[node.func.id][2]  # type: ignore[union-attr]
        return template.format(*(_latex(a)[0] for a in node.args)), 9
    if isinstance(node, ast.BinOp):
        op = type(node.op)
        prec = _PRECEDENCE[op]
        left, lp = _latex(node.left)
        right, rp = _latex(node.right)
        if op is ast.Div:
            return rf"\frac{{{left}}}{{{right}}}", 9
        if op is ast.Pow:
            if lp <= prec:
                left = rf"\left({left}\right)"
            return f"{left}^{{{right}}}", prec
        if lp < prec:
            left = rf"\left({left}\right)"
        if rp < prec or (rp == prec and op in (ast.Sub, ast.Div)):
            right = rf"\left({right}\right)"
        symbol = {ast.Add: "+", ast.Sub: "-", ast.Mult: r"\cdot"}[op]
        return f"{left} {symbol} {right}", prec
    return "?", 9


# --------------------------------------------------------------------------------- custom landscapes
def custom(
    expr: str,
    domain: Domain = ((-3.0, 3.0), (-3.0, 3.0)),
    start: Point | None = None,
    *,
    minima: list[tuple[float, float, float]] | None = None,
    log_scale: bool | None = None,
    title: str | None = None,
) -> Landscape:
    """A landscape from a formula in x and y (see the module docstring for what is allowed).

    ``start`` defaults to a point 80 % of the way from the domain's centre to its upper-left corner.
    The formula must give a finite value at the start. ``minima`` default to an estimate: the lowest
    point of an 81 × 81 grid over the domain, refined with L-BFGS-B inside the domain (it is the
    lowest point *in the domain*, which for a function unbounded below lies on its edge).
    ``log_scale`` defaults to True when the function is non-negative on the grid and its range is more
    than 50 times its 5 % quantile above the minimum (values concentrated near the bottom). Anything wrong raises ``ValueError`` saying what.
    """
    text = normalize(expr)
    f = compile_formula(text)
    formula = to_latex(text)
    domain = check_domain(domain)
    (x0, x1), (y0, y1) = domain
    if start is None:
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        start = (cx + 0.8 * (x0 - cx), cy + 0.8 * (y1 - cy))
    start = check_point(start, "start")
    if not (x0 <= start[0] <= x1 and y0 <= start[1] <= y1):
        raise ValueError(f"start {start} must lie inside the domain {domain}")

    start_value = _evaluate(f, np.array(start))
    if not (start_value.shape == () and math.isfinite(float(start_value))):
        raise ValueError(f"the formula {text!r} is not finite at the start ({start[0]:.4g}, {start[1]:.4g}) "
                         f"(value {float(start_value)!r}); "
                         "choose another start or formula")
    xs, ys = np.linspace(x0, x1, 81), np.linspace(y0, y1, 81)
    Z = _evaluate(f, np.stack(np.meshgrid(xs, ys), axis=-1))
    finite = np.isfinite(Z)
    estimated = minima is None
    if minima is None:
        minima = _estimate_minimum(f, domain, xs, ys, Z) if finite.any() else []
    else:
        try:
            minima = [tuple(float(v) for v in m) for m in minima]
            if any(len(m) != 3 for m in minima):
                raise ValueError
        except (TypeError, ValueError):
            raise ValueError("minima must be a list of (x, y, f) triples") from None
    if log_scale is None:  # a non-negative function whose low region is tiny against its range
        values = Z[finite]
        if values.size and values.min() >= 0:
            shifted = values - values.min()
            log_scale = bool(shifted.max() > 50 * max(float(np.quantile(shifted, 0.05)), 1e-300))
        else:
            log_scale = False
    recipe = {"kind": "custom", "expr": text, "domain": [list(domain[0]), list(domain[1])], "start": list(start)}
    return Landscape(
        name="custom", title=title or f"f(x, y) = {text}", formula=formula, f=f, domain=domain,
        minima=tuple(minima), start=start, log_scale=bool(log_scale), recipe=recipe,
        params={"minima_estimated": estimated},
        notes=("A custom formula; its minimum is the lowest point found numerically in the plot domain."
               if estimated else "A custom formula."),
    )


def _evaluate(f: Callable[[Tensor], Tensor], pts: np.ndarray) -> np.ndarray:
    """f at ``pts`` as float64 numpy; any runtime failure of the torch ops becomes ``ValueError``."""
    try:
        with torch.no_grad():
            out = f(torch.as_tensor(pts, dtype=torch.float64))
            out = torch.broadcast_to(out, pts.shape[:-1])
            return out.detach().numpy().astype(np.float64, copy=True)
    except (RuntimeError, TypeError, ValueError, OverflowError, ZeroDivisionError) as exc:
        raise ValueError(f"the formula could not be evaluated: {exc}") from None


def _estimate_minimum(f: Callable[[Tensor], Tensor], domain: Domain, xs: np.ndarray, ys: np.ndarray,
                      Z: np.ndarray) -> list[tuple[float, float, float]]:
    i, j = np.unravel_index(np.nanargmin(np.where(np.isfinite(Z), Z, np.nan)), Z.shape)
    best = (float(xs[j]), float(ys[i]), float(Z[i, j]))
    try:
        from scipy.optimize import minimize

        def fun(v: np.ndarray) -> tuple[float, np.ndarray]:
            p = torch.tensor(v, dtype=torch.float64, requires_grad=True)
            value = f(p)
            (grad,) = torch.autograd.grad(value, p)
            return float(value.detach()), grad.numpy()

        with np.errstate(all="ignore"):
            res = minimize(fun, np.array(best[:2]), jac=True, method="L-BFGS-B", bounds=list(domain),
                           options={"maxiter": 200})
        value = float(_evaluate(f, np.asarray(res.x)))
        if math.isfinite(value) and value <= best[2] and np.all(np.isfinite(res.x)):
            best = (float(res.x[0]), float(res.x[1]), value)
    except Exception:  # noqa: BLE001 - the grid estimate stands if refinement fails in any way
        pass
    return [best]
