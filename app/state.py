"""A page's setting in the URL: typed fields, parsed and validated like any input.

Every page declares its setting as a list of :class:`Field`. On arrival at a page (first run of a
session, or a switch from another page), :func:`load` reads ``st.query_params``, validates each value
with the same rules as the controls (optimizer fields use the registry's ``HyperSpec.validate``), puts
the valid ones into ``st.session_state`` under the widgets' keys and returns one sentence per rejected
value (the page shows them with ``st.warning`` and falls back to the default). After the page has
drawn its controls, :func:`save` writes the full setting back to the URL, so a link reproduces it.

The parse/dump functions here are pure (no Streamlit), so they are unit-tested directly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from optimizers import OPTIMIZERS, HyperSpec

NONE_TEXT = "none"
#: URL key naming the page a setting belongs to (a link without it is read by whichever page opens).
VIEW_KEY = "view"


@dataclass(frozen=True)
class Field:
    """One URL parameter: its key, default, and how to read (and check) and write it."""

    key: str
    default: Any
    parse: Callable[[str], Any]
    dump: Callable[[Any], str]
    help: str = ""

    def read(self, raw: str) -> Any:
        """The value for URL text ``raw``, or ``ValueError`` with a sentence saying what is allowed."""
        return self.parse(raw)


# --------------------------------------------------------------------------------- value formats
def fmt_number(value: Any) -> str:
    """A number as short exact text: ints as ints, floats with repr precision (round-trips)."""
    if value is None:
        return NONE_TEXT
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    value = float(value)
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _to_float(raw: str, key: str) -> float:
    try:
        value = float(str(raw).strip())
    except ValueError:
        raise ValueError(f"{key}={raw!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{key}={raw!r} is not finite")
    return value


def _to_int(raw: str, key: str) -> int:
    text = str(raw).strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{key}={raw!r} is not an integer") from None
    if not (math.isfinite(value) and value.is_integer()):
        raise ValueError(f"{key}={raw!r} is not an integer")
    return int(value)


def int_field(key: str, default: int | None, low: int, high: int, *, optional: bool = False,
              help: str = "") -> Field:
    """An integer from ``low`` to ``high``; ``optional`` also allows ``none``."""

    def parse(raw: str) -> int | None:
        if optional and str(raw).strip().lower() in (NONE_TEXT, ""):
            return None
        value = _to_int(raw, key)
        if not low <= value <= high:
            extra = ", or none" if optional else ""
            raise ValueError(f"{key}={raw!r} is out of range; allowed: an integer from {low} to {high}{extra}")
        return value

    return Field(key, default, parse, fmt_number, help)


def float_field(key: str, default: float, low: float, high: float, help: str = "") -> Field:
    """A finite number from ``low`` to ``high``."""

    def parse(raw: str) -> float:
        value = _to_float(raw, key)
        if not low <= value <= high:
            raise ValueError(f"{key}={raw!r} is out of range; allowed: a number from {low:g} to {high:g}")
        return value

    return Field(key, default, parse, fmt_number, help)


def choice_field(key: str, default: str, choices: Sequence[str], help: str = "") -> Field:
    """One of ``choices``."""
    choices = tuple(choices)

    def parse(raw: str) -> str:
        text = str(raw).strip()
        if text not in choices:
            raise ValueError(f"{key}={raw!r} is not a known option; allowed: {', '.join(choices)}")
        return text

    return Field(key, default, parse, str, help)


def bool_field(key: str, default: bool, help: str = "") -> Field:
    """``1/0``, ``true/false``, ``on/off``, ``yes/no``."""

    def parse(raw: str) -> bool:
        text = str(raw).strip().lower()
        if text in ("1", "true", "on", "yes"):
            return True
        if text in ("0", "false", "off", "no"):
            return False
        raise ValueError(f"{key}={raw!r} is not a switch value; allowed: 1 or 0 (true/false)")

    return Field(key, default, parse, lambda v: "1" if v else "0", help)


def list_field(key: str, default: Sequence[str], choices: Sequence[str], *, min_len: int = 1,
               max_len: int | None = None, help: str = "") -> Field:
    """A comma-separated list of distinct ``choices`` (order kept)."""
    choices = tuple(choices)

    def parse(raw: str) -> list[str]:
        items = [s.strip() for s in str(raw).split(",") if s.strip()]
        bad = [s for s in items if s not in choices]
        if bad:
            raise ValueError(f"{key}: unknown value {bad[0]!r}; allowed: {', '.join(choices)}")
        items = list(dict.fromkeys(items))
        if len(items) < min_len:
            raise ValueError(f"{key}: choose at least {min_len}")
        if max_len is not None and len(items) > max_len:
            raise ValueError(f"{key}: choose at most {max_len}")
        return items

    return Field(key, list(default), parse, lambda v: ",".join(v), help)


def text_field(key: str, default: str, max_len: int, help: str = "") -> Field:
    """Free text of at most ``max_len`` characters (checked for meaning by the page)."""

    def parse(raw: str) -> str:
        text = str(raw)
        if len(text) > max_len:
            raise ValueError(f"{key} is {len(text)} characters long; allowed: at most {max_len}")
        return text

    return Field(key, default, parse, str, help)


# --------------------------------------------------------------------------------- optimizer fields
#: Hyperparameters that are not per-optimizer controls in the app: seed and seed budget are global
#: controls of the 2-D pages; the chunk size and worker threads do not matter for a 2-element parameter.
GLOBAL_HYPER = ("seed", "seed_budget", "chunk_size", "workers")


#: An integer hyperparameter without an upper bound in the library (AdaMeZO's horizon K) is capped in the
#: app at this many times its slider's top: its cost grows with it, and a link must not set it to 10⁹.
APP_INT_CAP_FACTOR = 4


def app_high(spec: HyperSpec) -> float | None:
    """The largest value the app accepts for ``spec`` (the library may accept more from code)."""
    if spec.kind == "int" and spec.high is None and spec.ui_high is not None:
        return APP_INT_CAP_FACTOR * spec.ui_high
    return None


def spec_field(key: str, spec: HyperSpec, owner: str, default: Any | None = None) -> Field:
    """A field for one registry hyperparameter, validated by the spec itself (one source of truth), and
    capped at :func:`app_high` where the spec has no upper bound."""
    cap = app_high(spec)

    def parse(raw: str) -> Any:
        text = str(raw).strip()
        if spec.optional and text.lower() in (NONE_TEXT, ""):
            return None
        if spec.kind == "choice":
            value: Any = text
        elif spec.kind == "int":
            try:
                value = _to_int(text, key)
            except ValueError:
                value = text
        else:
            try:
                value = float(text)
            except ValueError:
                value = text
        try:
            value = spec.validate(value, owner)
        except ValueError as exc:
            raise ValueError(f"{key}: {exc}") from None
        if cap is not None and value is not None and value > cap:
            raise ValueError(f"{key}={raw!r} is too large for the app; allowed: {spec.allowed()} and at most "
                             f"{cap:g} (the library accepts more from code)")
        return value

    return Field(key, spec.default if default is None else default, parse,
                 str if spec.kind == "choice" else fmt_number, spec.help)


def optimizer_specs(name: str) -> dict[str, HyperSpec]:
    """The registry specs of ``name`` that the app shows as that optimizer's own controls."""
    return {k: s for k, s in OPTIMIZERS[name].specs.items() if k not in GLOBAL_HYPER}


def optimizer_fields(name: str, defaults: Mapping[str, Any] | None = None) -> list[Field]:
    """URL fields ``NAME.hyper`` for every control of optimizer ``name``."""
    defaults = defaults or {}
    title = OPTIMIZERS[name].title
    return [spec_field(f"{name}.{k}", s, title, defaults.get(k)) for k, s in optimizer_specs(name).items()]


# --------------------------------------------------------------------------------- pure URL round trip
def parse_params(fields: Iterable[Field], params: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Values for the ``fields`` present in ``params`` (URL text), and one message per bad value.

    Missing keys are left out (the caller keeps its current or default value); a bad value is left
    out too and explained in the messages, with the default it falls back to.
    """
    values: dict[str, Any] = {}
    errors: list[str] = []
    for f in fields:
        if f.key not in params:
            continue
        raw = params[f.key]
        if isinstance(raw, (list, tuple)):
            raw = raw[-1] if raw else ""
        try:
            values[f.key] = f.read(raw)
        except ValueError as exc:
            errors.append(f"Ignored the link's {exc}. Using {f.key}={f.dump(f.default)} instead.")
    return values, errors


def dump_params(fields: Iterable[Field], values: Mapping[str, Any]) -> dict[str, str]:
    """URL text for every field (its value in ``values``, else its default)."""
    return {f.key: f.dump(values.get(f.key, f.default)) for f in fields}


# --------------------------------------------------------------------------------- Streamlit glue
def widget_key(page: str, key: str) -> str:
    return f"{page}:{key}"


def load(page: str, fields: Sequence[Field]) -> list[str]:
    """Seed the widgets of ``page`` from the URL when the user arrives there; return the messages.

    On arrival the URL wins; without a URL value, the setting this session last had on the page (so a
    page switch and back keeps it), else the default. Later reruns leave the widgets alone.
    """
    import streamlit as st

    ss = st.session_state
    arrived = ss.get("_page") != page
    ss["_page"] = page
    if not arrived:
        carried = ss.pop("_carried_errors", None)  # see carry_errors()
        return list(carried[1]) if carried and carried[0] == page else []
    saved = ss.get(f"_saved:{page}", {})
    params = {k: st.query_params.get_all(k) for k in st.query_params.keys()}
    view = params.get(VIEW_KEY)
    if view and view[-1] != page:  # another page's setting, still in the URL after a page switch
        params = {}
    values, errors = parse_params(fields, params)
    for f in fields:
        if f.key in values:
            ss[widget_key(page, f.key)] = values[f.key]
        elif f.key in params:  # a bad value: the default, as the message says
            ss[widget_key(page, f.key)] = f.default
        else:
            ss[widget_key(page, f.key)] = saved.get(f.key, f.default)
    ss["_load_errors"] = (page, list(errors))
    return errors


def carry_errors() -> None:
    """Show this run's link messages again in the next run (a page that reruns itself at once, to show
    its runs in two passes, would otherwise lose them: they are only made when the user arrives)."""
    import streamlit as st

    last = st.session_state.get("_load_errors")
    if last is not None:
        st.session_state["_carried_errors"] = last


def ensure(page: str, f: Field) -> str:
    """The widget key of field ``f``, with a value in session state (saved or default) if it has none."""
    import streamlit as st

    key = widget_key(page, f.key)
    if key not in st.session_state:
        st.session_state[key] = st.session_state.get(f"_saved:{page}", {}).get(f.key, f.default)
    return key


def value(page: str, f: Field) -> Any:
    import streamlit as st

    return st.session_state.get(widget_key(page, f.key), f.default)


def save(page: str, fields: Sequence[Field], values: Mapping[str, Any]) -> None:
    """Write the page's full setting to the URL (only if it changed) and remember it for the session."""
    import streamlit as st

    st.session_state[f"_saved:{page}"] = dict(values)
    target = {VIEW_KEY: page} | dump_params(fields, values)
    if st.session_state.get("present"):
        target["present"] = "1"
    current = {k: st.query_params.get(k) for k in st.query_params.keys()}
    if current != target:
        st.query_params.from_dict(target)
