"""Compare: one optimizer, one hyperparameter swept over several values, over several seeds."""

from __future__ import annotations

import streamlit as st

from optimizers import OPTIMIZERS

from app import controls, state, views
from app.presets import SWEEP_DEFAULTS
from app.text import plain

PAGE = "compare"
FIELDS = controls.compare_fields()
BY_KEY = {f.key: f for f in FIELDS}


def _param_changed() -> None:
    """A new swept hyperparameter starts from a sensible list of values."""
    param = st.session_state[state.widget_key(PAGE, "param")]
    st.session_state[state.widget_key(PAGE, "values")] = SWEEP_DEFAULTS.get(param, "")


def _optimizer_changed() -> None:
    names = st.session_state[state.widget_key(PAGE, "opt")] or ["adamezo"]
    pkey = state.widget_key(PAGE, "param")
    if st.session_state.get(pkey) not in controls.sweepable(names):
        st.session_state[pkey] = controls.sweepable(names)[0]
        _param_changed()


def url_fields(values: dict) -> list[state.Field]:
    """The fields that matter for this setting (the swept hyperparameter's own field is left out)."""
    swept = ("beta1", "beta2") if values["param"] == "betas" else (values["param"],)
    return controls.setting_fields(FIELDS, values["ls"],
                                   lambda name, hyper: name in values["opt"] and hyper not in swept)


errors = state.load(PAGE, FIELDS)
st.title("Compare")
st.caption("One hyperparameter swept over several values, for one optimizer or several side by side: small "
           "multiples of the paths, the loss with its spread over seeds, and a ranking.")
for e in errors:
    st.warning(plain(e))

with st.sidebar:
    st.header("Setting")
    values = controls.landscape_controls(PAGE, BY_KEY, on_change=controls.start_resetter(PAGE))
    values |= controls.run_controls(PAGE, BY_KEY)
    okey = state.ensure(PAGE, BY_KEY["opt"])
    values["opt"] = st.multiselect("Optimizers", list(OPTIMIZERS), key=okey,
                                   max_selections=controls.MAX_COMPARE_OPTIMIZERS,
                                   format_func=lambda n: OPTIMIZERS[n].title, on_change=_optimizer_changed,
                                   help="Each chosen optimizer is swept over the same values (at most "
                                        f"{controls.MAX_COMPARE_OPTIMIZERS}).")
    if not values["opt"]:
        st.error("Choose at least one optimizer; showing AdaMeZO.")
        values["opt"] = ["adamezo"]
    options = controls.sweepable(values["opt"])
    pkey = state.ensure(PAGE, BY_KEY["param"])
    param_ok = st.session_state[pkey] in options
    if not param_ok:
        if len(values["opt"]) == 1:
            why = f"{OPTIMIZERS[values['opt'][0]].title} has no hyperparameter {st.session_state[pkey]!r} to sweep"
        else:
            titles = " and ".join(OPTIMIZERS[n].title for n in values["opt"])
            why = f"{titles} cannot sweep {st.session_state[pkey]!r} together"
        st.error(f"{why}; showing {options[0]} instead.")
        st.session_state[pkey] = options[0]
        st.session_state[state.widget_key(PAGE, "values")] = SWEEP_DEFAULTS.get(options[0], "")
    values["param"] = st.selectbox("Swept hyperparameter", options, key=pkey, on_change=_param_changed,
                                   format_func=lambda p: p.replace("_", " "))
    values["values"] = st.text_input("Values (comma-separated, at most 8)", key=state.ensure(PAGE, BY_KEY["values"]),
                                     help="Each value is checked against the optimizer's allowed range; "
                                          "for the seed budget, 'none' means a fresh direction every step; "
                                          "betas are pairs beta1/beta2.")
    values["lrs"] = st.text_input("lr per value (optional)", key=state.ensure(PAGE, BY_KEY["lrs"]),
                                  help="One learning rate per swept value, comma-separated (one optimizer only): "
                                       "for values that change the step's scale, such as betas. Empty: every "
                                       "value uses the lr set below.")
    swept = ("beta1", "beta2") if values["param"] == "betas" else (values["param"],)
    for name in values["opt"]:
        with st.expander(f"Other {OPTIMIZERS[name].title} hyperparameters"):
            for k, v in controls.optimizer_controls(PAGE, name).items():
                if k not in swept:
                    values[f"{name}.{k}"] = v

for f in FIELDS:
    values.setdefault(f.key, state.value(PAGE, f))
state.save(PAGE, url_fields(values), values)
views.compare_results(values, key=PAGE)
