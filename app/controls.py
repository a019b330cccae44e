"""Controls generated from the registries, and the 2-D pages' setting schemas.

- Optimizer controls come from ``OPTIMIZERS[name].specs`` (``HyperSpec``): a select slider over
  1-2-5 values for ``log=True`` floats, a slider over ``ui_low..ui_high`` for linear floats and
  integers (widened to include a value from a link), a select box for choices.
- Landscape parameters come from ``landscapes.parameters(name)``.
- The field lists (``playground_fields``, ``compare_fields``) are the pages' full settings: the URL,
  the widgets and the lesson buttons all use them, so a value is validated the same way everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import landscapes
from optimizers import OPTIMIZERS, HyperSpec

from app import state
from app.presets import COMPARE_DEFAULT, PLAYGROUND_DEFAULT, SWEEP_DEFAULTS, demo_defaults
from app.state import Field

LANDSCAPE_NAMES = [*landscapes.names(), "custom"]
MAX_STEPS = 5000
MAX_REPEATS = 20
MAX_SEED = 10**6
BUDGET_OPTIONS: list[Any] = [None, 1, 2, 3, 4, 5, 10, 20, 50, 100, 1000]
FAIR_MODES = {"off": "off", "path": "equal path length", "budget": "equal forward passes"}
COLOUR_MODES = ("auto", "log", "linear")
#: The order the Compare page lists sweepable hyperparameters in; one not named here comes after them.
_SWEEP_ORDER = ("betas", "beta1", "beta2", "horizon", "lr", "eps", "warmup", "delta", "weight_decay",
                "hessian_smooth", "distribution")
#: Hyperparameters the Compare page can sweep (plus the global seed budget): every registry entry's
#: ``sweepable``. ``betas`` sweeps the pair (beta1, beta2) together, written ``b1/b2`` (e.g.
#: ``0.7/0.9, 0.7/0, 0/0``: the paper's β study).
SWEEPABLE = tuple(sorted(dict.fromkeys(p for e in OPTIMIZERS.values() for p in e.sweepable),
                         key=lambda p: _SWEEP_ORDER.index(p) if p in _SWEEP_ORDER else len(_SWEEP_ORDER)))
#: At most this many optimizers side by side on the Compare page.
MAX_COMPARE_OPTIMIZERS = 3


# --------------------------------------------------------------------------------- number formats
def fmt(v: Any) -> str:
    if v is None:
        return "none"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, tuple):
        return "/".join(fmt(x) for x in v)
    return str(v)


def nice_values(low: float, high: float) -> list[float]:
    """1-2-5 values from ``low`` to ``high`` (both > 0), for log-scale select sliders."""
    out = []
    for k in range(math.floor(math.log10(low)) - 1, math.ceil(math.log10(high)) + 1):
        for m in (1, 2, 5):
            v = float(f"{m}e{k}")
            if low * (1 - 1e-9) <= v <= high * (1 + 1e-9):
                out.append(v)
    return out


def spec_options(spec: HyperSpec, current: Any) -> list[Any]:
    """Options of a select slider for a log float (or a zero-or-tiny float such as HiZOO's α)."""
    lo, hi = spec.ui_low, spec.ui_high
    if spec.log:
        opts = nice_values(lo, hi)
    else:
        opts = [0.0] + nice_values(max(min(abs(spec.default), hi), 1e-12), hi)
    if current is not None and current not in opts:
        opts.append(float(current))
    return sorted(set(opts))


def control_kind(spec: HyperSpec) -> str:
    """How a spec is shown: ``select`` (choice), ``log`` (select slider), ``slider``."""
    if spec.kind == "choice":
        return "select"
    if spec.kind == "float" and (spec.log or (spec.ui_low == 0 and spec.default
                                               and abs(spec.default) < (spec.ui_high - spec.ui_low) / 100)):
        return "log"
    return "slider"


def slider_step(spec: HyperSpec) -> float:
    span = spec.ui_high - spec.ui_low
    return float(10 ** math.floor(math.log10(span / 100))) if span > 0 else 0.01


# --------------------------------------------------------------------------------- schemas
def landscape_fields(default: str = "rosenbrock") -> list[Field]:
    return [
        state.choice_field("ls", default, LANDSCAPE_NAMES, "The landscape"),
        state.float_field("kappa", 100.0, 1.0, 1e6, "Condition number of the quadratic"),
        state.float_field("angle", 0.0, -360.0, 360.0, "Rotation of the quadratic's valley (degrees)"),
        state.text_field("expr", "x**2 + 10*y**2", landscapes.MAX_LENGTH, "Custom formula in x and y"),
        state.float_field("dx0", -3.0, -1e6, 1e6), state.float_field("dx1", 3.0, -1e6, 1e6),
        state.float_field("dy0", -3.0, -1e6, 1e6), state.float_field("dy1", 3.0, -1e6, 1e6),
        _opt_float("x0"), _opt_float("y0"),
    ]


def _opt_float(key: str) -> Field:
    """A start coordinate: a number, or ``none`` for the landscape's own start."""

    def parse(raw: str):
        text = str(raw).strip().lower()
        if text in ("", "none"):
            return None
        try:
            v = float(text)
        except ValueError:
            raise ValueError(f"{key}={raw!r} is not a number; allowed: a number, or none for the "
                             "landscape's start") from None
        if not (math.isfinite(v) and abs(v) <= 1e6):
            raise ValueError(f"{key}={raw!r} is out of range; allowed: a finite number within ±1e6, or none")
        return v

    return Field(key, None, parse, state.fmt_number)


def run_fields(defaults: Mapping[str, Any] = PLAYGROUND_DEFAULT) -> list[Field]:
    return [
        state.int_field("steps", defaults["steps"], 1, MAX_STEPS, help="Optimizer steps"),
        state.int_field("seed", 0, 0, MAX_SEED, help="Seed of the first run (repeats use the next seeds)"),
        state.int_field("budget", defaults["budget"], 1, MAX_SEED, optional=True,
                        help="Seed budget; none draws fresh seeds"),
        state.int_field("repeats", defaults["repeats"], 1, MAX_REPEATS, help="Runs over consecutive seeds"),
    ]


def all_optimizer_fields() -> list[Field]:
    out: list[Field] = []
    for name in OPTIMIZERS:
        out += state.optimizer_fields(name, demo_defaults(name))
    return out


def playground_fields() -> list[Field]:
    names = list(OPTIMIZERS)
    return [
        *landscape_fields(PLAYGROUND_DEFAULT["ls"]), *run_fields(),
        state.list_field("opts", PLAYGROUND_DEFAULT["opts"], names, min_len=1, help="Optimizers"),
        state.choice_field("fair", "off", list(FAIR_MODES), "Fair comparison"),
        state.choice_field("colour", "auto", COLOUR_MODES, "Colour scale"),
        state.bool_field("surface3d", False, "Also show the 3-D surface"),
        *all_optimizer_fields(),
    ]


def compare_fields() -> list[Field]:
    return [
        *landscape_fields(COMPARE_DEFAULT["ls"]), *run_fields(COMPARE_DEFAULT),
        state.list_field("opt", ["adamezo"], list(OPTIMIZERS), min_len=1, max_len=MAX_COMPARE_OPTIMIZERS,
                         help="Optimizers (each one is swept over the same values)"),
        state.choice_field("param", "beta1", [*SWEEPABLE, "seed_budget"], "Swept hyperparameter"),
        state.text_field("values", SWEEP_DEFAULTS["beta1"], 200, "Values, comma-separated"),
        state.text_field("lrs", "", 200, "Optional: one lr per value, comma-separated (one optimizer only)"),
        *all_optimizer_fields(),
    ]


def defaults(fields: Sequence[Field]) -> dict[str, Any]:
    return {f.key: f.default for f in fields}


def setting_from_params(fields: Sequence[Field], params: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A full typed setting from URL-style values (defaults where missing), and messages for bad ones."""
    values, errors = state.parse_params(fields, params)
    return defaults(fields) | values, errors


def hyper_of(values: Mapping[str, Any], name: str) -> dict[str, Any]:
    """Optimizer ``name``'s hyperparameters from a setting (its ``NAME.hyper`` entries)."""
    specs = state.optimizer_specs(name)
    base = demo_defaults(name)
    return {k: values.get(f"{name}.{k}", base[k]) for k in specs}


def parse_sweep_values(text: str, names: str | Sequence[str], param: str) -> list[Any]:
    """The swept values, each validated by the registry's spec of every optimizer in ``names`` (or as a
    seed budget; ``betas`` values are pairs ``b1/b2``); ``ValueError`` with a sentence on the first bad one."""
    names = [names] if isinstance(names, str) else list(names)
    items = [s.strip() for s in str(text).split(",") if s.strip()]
    if not items:
        raise ValueError("give at least one value to sweep, separated by commas")
    if len(items) > 8:
        raise ValueError(f"{len(items)} values given; allowed: at most 8")
    if param == "seed_budget":
        f = state.int_field("seed budget", None, 1, MAX_SEED, optional=True)
        return list(dict.fromkeys(f.read(s) for s in items))
    out: list[Any] = []
    for name in names:
        specs = OPTIMIZERS[name].specs
        title = OPTIMIZERS[name].title
        if param == "betas":
            if "beta1" not in specs or "beta2" not in specs:
                raise ValueError(f"{title} has no betas to sweep")
            f1 = state.spec_field("beta1", specs["beta1"], title)
            f2 = state.spec_field("beta2", specs["beta2"], title)
            out = []
            for item in items:
                parts = item.split("/")
                if len(parts) != 2:
                    raise ValueError(f"betas value {item!r} is not a pair; write it as beta1/beta2, e.g. 0.7/0.9")
                out.append((f1.read(parts[0]), f2.read(parts[1])))
        else:
            if param not in specs:
                raise ValueError(f"{title} has no hyperparameter {param!r}; "
                                 f"it has: {', '.join(state.optimizer_specs(name))}")
            f = state.spec_field(param, specs[param], title)
            out = [f.read(s) for s in items]
    return list(dict.fromkeys(out))


def value_hyper(param: str, value: Any) -> dict[str, Any]:
    """The hyperparameters a swept value sets (none for the seed budget, both betas for ``betas``)."""
    if param == "seed_budget":
        return {}
    if param == "betas":
        return {"beta1": value[0], "beta2": value[1]}
    return {param: value}


def parse_lrs(text: str, names: Sequence[str], param: str, count: int) -> list[float] | None:
    """Optional per-value learning rates (one per swept value, for one optimizer): ``None`` when empty,
    else the list, each checked by the optimizer's lr spec; ``ValueError`` saying what is allowed."""
    items = [s.strip() for s in str(text or "").split(",") if s.strip()]
    if not items:
        return None
    if len(names) != 1:
        raise ValueError("one lr per value needs a single optimizer; clear the lrs or choose one optimizer")
    if param == "lr":
        raise ValueError("the swept hyperparameter is the lr itself; clear the per-value lrs")
    if len(items) != count:
        raise ValueError(f"{len(items)} lrs given for {count} values; give one lr per value, or none")
    name = names[0]
    f = state.spec_field("lr", OPTIMIZERS[name].specs["lr"], OPTIMIZERS[name].title)
    return [float(f.read(s)) for s in items]


@dataclass(frozen=True)
class SweepRun:
    """One panel of the Compare page: an optimizer at one swept value, with its full hyperparameters."""

    optimizer: str
    value: Any
    index: int  # of the value in the swept list
    hyper: dict[str, Any]
    seed_budget: int | None
    label: str


def sweep_plan(values: Mapping[str, Any]) -> list[SweepRun]:
    """The panels of a Compare setting, optimizer by optimizer and value by value; ``ValueError`` with a
    sentence for the page when the sweep cannot run (nothing to sweep together, bad values or lrs)."""
    names = [values["opt"]] if isinstance(values["opt"], str) else list(values["opt"])
    param = values["param"]
    allowed = sweepable(names)
    if param not in allowed:
        who = " and ".join(OPTIMIZERS[n].title for n in names)
        raise ValueError(f"{who} {'have' if len(names) > 1 else 'has'} no hyperparameter {param!r} to sweep "
                         f"together; choose one of {', '.join(allowed)}.")
    try:
        swept = parse_sweep_values(values["values"], names, param)
    except ValueError as exc:
        raise ValueError(f"The values to sweep are not valid: {exc}") from None
    try:
        lrs = parse_lrs(values.get("lrs", ""), names, param, len(swept))
    except ValueError as exc:
        raise ValueError(f"The per-value learning rates are not valid: {exc}") from None
    out = []
    for n in names:
        base = hyper_of(values, n)
        for i, v in enumerate(swept):
            hyper = base | value_hyper(param, v)
            if lrs is not None:
                hyper["lr"] = lrs[i]
            label = f"{param.replace('_', ' ')} = {fmt(v)}"
            if len(names) > 1:
                label = f"{OPTIMIZERS[n].title} · {label}"
            out.append(SweepRun(n, v, i, hyper, v if param == "seed_budget" else values["budget"], label))
    return out


def sweepable(names: str | Sequence[str]) -> list[str]:
    """What the Compare page can sweep for every optimizer in ``names`` (the seed budget only when all
    of them draw random directions)."""
    names = [names] if isinstance(names, str) else list(names)
    out = [p for p in SWEEPABLE if all(p in OPTIMIZERS[n].sweepable for n in names)]
    if all(OPTIMIZERS[n].zeroth_order for n in names):
        out.append("seed_budget")
    return out


# --------------------------------------------------------------------------------- work budget
#: What one step costs on a 2-D landscape, in MeZO steps, is each registry entry's ``step_cost_2d`` (CPU
#: time per step of 400-step runs on Rosenbrock, this 2-core machine, 2026-11-30: MeZO 91 µs, AdaMeZO
#: 104 / 168 / 422 / 1126 µs at K = 1 / 10 / 50 / 200, ZO-Adam 131, HiZOO 151, Adam 199, AdamW 195; and
#: on 2026-12-01, busier: MeZO 97, HELENE 124 (1.27×), ZO-AdaMU 172 (1.76×)).
#: AdaMeZO regenerates K directions a step, hence ``HORIZON_COST`` per unit of K; q directions a step
#: cost q times as much.
HORIZON_COST = 0.065
#: Evaluations (runs of the full length) one path-length match takes in the app: a 10-point log scan
#: and Brent's method (``compute.matched_lr``).
MATCH_EVALUATIONS = 25
#: The most computing one change of a page may ask for, in MeZO steps (about 40 s of CPU here, spread
#: over the worker processes); ``ADAMEZO_APP_MAX_WORK`` lets the server's operator set another.
DEFAULT_MAX_WORK = 400_000


def max_work() -> int:
    """The work budget per change (``ADAMEZO_APP_MAX_WORK``, else the default); ``ValueError`` if the
    variable is not an integer from 1000 to 10⁹."""
    import os

    raw = os.environ.get("ADAMEZO_APP_MAX_WORK", "").strip()
    if not raw:
        return DEFAULT_MAX_WORK
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"ADAMEZO_APP_MAX_WORK={raw!r} is not an integer; allowed: 1000 to 1000000000") from None
    if not 1000 <= value <= 10**9:
        raise ValueError(f"ADAMEZO_APP_MAX_WORK={value} is out of range; allowed: 1000 to 1000000000")
    return value


def step_cost(name: str, hyper: Mapping[str, Any]) -> float:
    """One step of optimizer ``name`` with ``hyper``, in MeZO steps."""
    entry = OPTIMIZERS[name]
    if not entry.zeroth_order:
        return entry.step_cost_2d
    return ((entry.step_cost_2d + HORIZON_COST * float(hyper.get("horizon") or 0))
            * int(hyper.get("num_directions") or 1))


def runs_work(runs: Iterable[tuple[str, int, Mapping[str, Any], int]]) -> float:
    """The work of ``(optimizer, steps, hyper, repeats)`` runs, in MeZO steps (a first-order run is
    computed once for every seed)."""
    return sum(steps * step_cost(n, h) * (repeats if OPTIMIZERS[n].zeroth_order else 1)
               for n, steps, h, repeats in runs)


def playground_work(values: Mapping[str, Any]) -> float:
    """What a Playground setting asks for, in MeZO steps: every run, and with equal path lengths the
    matching of every other optimizer's lr."""
    names = list(values["opts"])
    steps, repeats = int(values["steps"]), int(values["repeats"])
    fair = values.get("fair", "off")
    hypers = {n: hyper_of(values, n) for n in names}
    each = {n: steps for n in names}
    if fair == "budget":  # steps = forward passes / passes per step: never more than `steps` × 2
        each = {n: 2 * steps // max(1, OPTIMIZERS[n].forward_passes(hypers[n])) for n in names}
    work = runs_work((n, each[n], hypers[n], repeats) for n in names)
    if fair == "path" and len(names) > 1:
        work += sum(MATCH_EVALUATIONS * steps * step_cost(n, hypers[n]) for n in names[1:])
    return work


def compare_work(values: Mapping[str, Any], plan: Sequence[SweepRun]) -> float:
    return runs_work((r.optimizer, int(values["steps"]), r.hyper, int(values["repeats"])) for r in plan)


def work_message(work: float, budget: int, what: str) -> str | None:
    """``None`` if ``work`` fits the budget, else the sentence a page shows instead of computing."""
    if work <= budget:
        return None
    return (f"This setting asks for about {work:,.0f} optimizer steps of computing ({what}); the app does at most "
            f"{budget:,} per change. Lower the steps, the repeats, the number of optimizers or values, or "
            f"AdaMeZO's horizon K (each unit of K costs {HORIZON_COST:g} of a MeZO step).")


#: A custom domain's width and height may differ by at most this factor (the plot keeps x and y at the
#: same scale; beyond it the picture is a line).
MAX_DOMAIN_ASPECT = 100.0


def check_domain_aspect(values: Mapping[str, Any]) -> None:
    """``ValueError`` if a custom domain is too elongated to draw."""
    if values.get("ls") != "custom":
        return
    width = float(values["dx1"]) - float(values["dx0"])
    height = float(values["dy1"]) - float(values["dy0"])
    if width > 0 and height > 0 and not 1 / MAX_DOMAIN_ASPECT <= width / height <= MAX_DOMAIN_ASPECT:
        raise ValueError(f"the domain is {width:.4g} wide and {height:.4g} tall; allowed: width and height within "
                         f"a factor {MAX_DOMAIN_ASPECT:g} of each other")


# --------------------------------------------------------------------------------- widgets
def optimizer_controls(page: str, name: str, container=None, base: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One widget per hyperparameter of ``name`` (generated from its specs); returns their values.

    ``base`` gives the starting values (default: the 2-D starting values over the registry's)."""
    import streamlit as st

    box = container if container is not None else st
    out: dict[str, Any] = {}
    base = dict(base) if base is not None else demo_defaults(name)
    title = OPTIMIZERS[name].title
    for k, spec in state.optimizer_specs(name).items():
        f = state.spec_field(f"{name}.{k}", spec, title, base[k])
        key = state.ensure(page, f)
        current = st.session_state[key]
        label = k.replace("_", " ")
        kind = control_kind(spec)
        if kind == "select":
            if current not in spec.choices:
                st.session_state[key] = spec.default
            out[k] = box.selectbox(label, spec.choices, key=key, help=spec.help)
        elif kind == "log":
            opts = spec_options(spec, current)
            out[k] = box.select_slider(label, options=opts, key=key, help=spec.help, format_func=fmt)
        else:
            lo, hi = spec.ui_low, spec.ui_high
            if spec.kind == "int":
                lo, hi = int(min(lo, current)), int(max(hi, current))
                out[k] = box.slider(label, lo, hi, key=key, step=1, help=spec.help)
            else:
                lo, hi = float(min(lo, current)), float(max(hi, current))
                st.session_state[key] = float(current)
                out[k] = box.slider(label, lo, hi, key=key, step=slider_step(spec), help=spec.help,
                                    format="%g")
    return out


LANDSCAPE_PARAMS = ("kappa", "angle")
CUSTOM_KEYS = ("expr", "dx0", "dx1", "dy0", "dy1")


def landscape_field_matters(key: str, landscape: str) -> bool | None:
    """For a landscape field (a landscape parameter or a custom-formula field): whether it belongs to
    the setting of ``landscape``. ``None`` for any other field."""
    if key in LANDSCAPE_PARAMS:
        return landscape != "custom" and key in landscapes.parameters(landscape)
    if key in CUSTOM_KEYS:
        return landscape == "custom"
    return None


def setting_fields(fields: Iterable[Field], landscape: str,
                   optimizer_field: Callable[[str, str], bool]) -> list[Field]:
    """The fields of a 2-D page that belong to its current setting (what the URL keeps): an optimizer
    field ``name.hyper`` where ``optimizer_field(name, hyper)`` holds, a landscape field where it
    belongs to ``landscape``, and every other field."""
    keep = []
    for f in fields:
        head, _, tail = f.key.partition(".")
        if tail:
            if optimizer_field(head, tail):
                keep.append(f)
        elif (matters := landscape_field_matters(f.key, landscape)) is not None:
            if matters:
                keep.append(f)
        else:
            keep.append(f)
    return keep


def start_resetter(page: str):
    """An on_change callback: a new landscape starts from its own start point (the boxes show it as a
    placeholder)."""
    def reset() -> None:
        import streamlit as st

        for k in ("x0", "y0"):
            st.session_state[state.widget_key(page, k)] = None

    return reset


def landscape_controls(page: str, fields: Mapping[str, Field], on_change=None, container=None) -> dict[str, Any]:
    """Landscape picker, its parameters (from ``landscapes.parameters``), custom formula and domain,
    and the start point. Returns the chosen values."""
    import streamlit as st

    box = container if container is not None else st
    v: dict[str, Any] = {}
    k = state.ensure(page, fields["ls"])
    titles = {n: (landscapes.LANDSCAPES[n].title if n in landscapes.LANDSCAPES else "Custom formula…")
              for n in LANDSCAPE_NAMES}
    v["ls"] = box.selectbox("Landscape", LANDSCAPE_NAMES, key=k, format_func=lambda n: titles[n],
                            on_change=on_change, help="A test function, or type your own formula.")
    params = landscapes.parameters(v["ls"]) if v["ls"] != "custom" else {}
    for pname, p in params.items():
        key = state.ensure(page, fields[pname])
        current = float(st.session_state[key])
        if p.log:
            opts = sorted(set(nice_values(p.low, p.high)) | {current})
            v[pname] = box.select_slider(pname, options=opts, key=key, format_func=fmt, help=p.help)
        else:
            st.session_state[key] = current
            v[pname] = box.slider(pname, float(p.low), float(p.high), key=key, step=1.0, help=p.help)
    if v["ls"] == "custom":
        v["expr"] = box.text_input("f(x, y) =", key=state.ensure(page, fields["expr"]),
                                   max_chars=landscapes.MAX_LENGTH, on_change=on_change,
                                   help="Numbers, x, y, pi, e, + - * / ** and functions such as sin, exp, "
                                        "log, sqrt, abs.")
        c1, c2, c3, c4 = box.columns(4)
        for col, key in zip((c1, c2, c3, c4), ("dx0", "dx1", "dy0", "dy1")):
            v[key] = col.number_input(key.replace("d", "", 1), key=state.ensure(page, fields[key]),
                                      format="%g", on_change=on_change, step=0.5)
    c1, c2 = box.columns(2)
    for col, key in zip((c1, c2), ("x0", "y0")):
        skey = state.ensure(page, fields[key])
        v[key] = col.number_input(f"start {key[0]}", value=None, key=skey, format="%.4g", step=0.1,
                                  placeholder="landscape's start",
                                  help="Empty: the landscape's own start. Click the contour to set it.")
    return v


def run_controls(page: str, fields: Mapping[str, Field], container=None, with_repeats: bool = True) -> dict[str, Any]:
    import streamlit as st

    box = container if container is not None else st
    v: dict[str, Any] = {}
    c1, c2 = box.columns(2)
    v["steps"] = c1.number_input("steps", 1, MAX_STEPS, key=state.ensure(page, fields["steps"]), step=50,
                                 help="Optimizer steps (1 to 5000).")
    v["seed"] = c2.number_input("seed", 0, MAX_SEED, key=state.ensure(page, fields["seed"]), step=1,
                                help=fields["seed"].help)
    bkey = state.ensure(page, fields["budget"])
    opts = list(BUDGET_OPTIONS)
    if st.session_state[bkey] not in opts:
        opts = [None] + sorted([o for o in opts if o is not None] + [int(st.session_state[bkey])])
    v["budget"] = box.select_slider("seed budget", options=opts, key=bkey, format_func=fmt,
                                    help="Size of the pool of random directions (as when steps are far fewer "
                                         "than parameters); none draws a fresh direction each step.")
    if with_repeats:
        v["repeats"] = box.slider("repeats (seeds)", 1, MAX_REPEATS, key=state.ensure(page, fields["repeats"]),
                                  help="Runs over seeds seed, seed+1, …: the loss plot shows the median and "
                                       "a 10–90 % band.")
    return v


def start_point(values: Mapping[str, Any], ls) -> tuple[float, float]:
    x = values.get("x0")
    y = values.get("y0")
    return (float(ls.start[0] if x is None else x), float(ls.start[1] if y is None else y))


#: A landscape as hashable data: ("catalogue", name, ((param, value), ...)) or
#: ("custom", expr, ((x0, x1), (y0, y1))).
LandscapeKey = tuple


def landscape_key(name: str, params: Mapping[str, float] | None = None, expr: str = "",
                  domain: Sequence[Sequence[float]] | None = None) -> LandscapeKey:
    if name == "custom":
        (x0, x1), (y0, y1) = domain or ((-3.0, 3.0), (-3.0, 3.0))
        return ("custom", str(expr), ((float(x0), float(x1)), (float(y0), float(y1))))
    return ("catalogue", name, tuple(sorted((k, float(v)) for k, v in (params or {}).items())))


def landscape_from_key(key: LandscapeKey) -> landscapes.Landscape:
    """The landscape for ``key``; bad formulas or parameters raise ``ValueError``."""
    if key[0] == "custom":
        _, expr, domain = key
        return landscapes.custom(expr, domain=domain, start=None)
    _, name, params = key
    return landscapes.get(name, **dict(params))


def landscape_key_of(values: Mapping[str, Any]) -> LandscapeKey:
    name = values["ls"]
    if name == "custom":
        return landscape_key("custom", expr=values["expr"],
                             domain=((values["dx0"], values["dx1"]), (values["dy0"], values["dy1"])))
    params = {p: values[p] for p in landscapes.parameters(name)}
    return landscape_key(name, params)
