"""Compare: one optimizer, one hyperparameter swept over several values, over several seeds."""

from __future__ import annotations

import streamlit as st

from optimizers import OPTIMIZERS

from app import controls, state, views
from app.presets import SWEEP_DEFAULTS

PAGE = "compare"
FIELDS = controls.compare_fields()
BY_KEY = {f.key: f for f in FIELDS}


def _param_changed() -> None:
    """A new swept hyperparameter starts from a sensible list of values."""
    param = st.session_state[state.widget_key(PAGE, "param")]
    st.session_state[state.widget_key(PAGE, "values")] = SWEEP_DEFAULTS.get(param, "")


def _optimizer_changed() -> None:
    name = st.session_state[state.widget_key(PAGE, "opt")]
    pkey = state.widget_key(PAGE, "param")
    if st.session_state.get(pkey) not in controls.sweepable(name):
        st.session_state[pkey] = controls.sweepable(name)[0]
        _param_changed()


def url_fields(values: dict) -> list[state.Field]:
    """The fields that matter for this setting (the swept hyperparameter's own field is left out)."""
    return controls.setting_fields(FIELDS, values["ls"],
                                   lambda name, hyper: name == values["opt"] and hyper != values["param"])


errors = state.load(PAGE, FIELDS)
st.title("Compare")
st.caption("One optimizer, one hyperparameter swept over several values: small multiples of the paths, the loss "
           "with its spread over seeds, and a ranking.")
for e in errors:
    st.warning(e)

with st.sidebar:
    st.header("Setting")
    values = controls.landscape_controls(PAGE, BY_KEY, on_change=controls.start_resetter(PAGE))
    values |= controls.run_controls(PAGE, BY_KEY)
    values["opt"] = st.selectbox("Optimizer", list(OPTIMIZERS), key=state.ensure(PAGE, BY_KEY["opt"]),
                                 format_func=lambda n: OPTIMIZERS[n].title, on_change=_optimizer_changed)
    options = controls.sweepable(values["opt"])
    pkey = state.ensure(PAGE, BY_KEY["param"])
    param_ok = st.session_state[pkey] in options
    if not param_ok:
        st.error(f"{OPTIMIZERS[values['opt']].title} has no hyperparameter {st.session_state[pkey]!r} to sweep; "
                 f"showing {options[0]} instead.")
        st.session_state[pkey] = options[0]
        st.session_state[state.widget_key(PAGE, "values")] = SWEEP_DEFAULTS.get(options[0], "")
    values["param"] = st.selectbox("Swept hyperparameter", options, key=pkey, on_change=_param_changed,
                                   format_func=lambda p: p.replace("_", " "))
    values["values"] = st.text_input("Values (comma-separated, at most 8)", key=state.ensure(PAGE, BY_KEY["values"]),
                                     help="Each value is checked against the optimizer's allowed range; "
                                          "for the seed budget, 'none' means a fresh direction every step.")
    with st.expander(f"Other {OPTIMIZERS[values['opt']].title} hyperparameters"):
        for k, v in controls.optimizer_controls(PAGE, values["opt"]).items():
            if k != values["param"]:
                values[f"{values['opt']}.{k}"] = v

for f in FIELDS:
    values.setdefault(f.key, state.value(PAGE, f))
state.save(PAGE, url_fields(values), values)
views.compare_results(values, key=PAGE)
