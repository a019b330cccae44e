"""Playground: optimizers on a 2-D landscape, animated, with metrics and a fair-comparison switch."""

from __future__ import annotations

import streamlit as st

# The page's frame first: on a cold start the imports below (torch) take a second or two.
st.title("Playground")
st.caption("Zeroth-order optimizers (MeZO, AdaMeZO, ZO-Adam, HiZOO) and first-order Adam on a 2-D landscape: "
           "the same optimizer classes that fine-tune the LLM, on a 2-element parameter.")

from app import landing  # noqa: E402  (no torch: the stored landing picture shows before the imports below)

notes = st.empty()  # the landscape's line, above the charts (the stored picture's at first)
stored = landing.show(notes)

import landscapes  # noqa: E402
from optimizers import OPTIMIZERS  # noqa: E402

from app import controls, state, views  # noqa: E402
from app.text import plain  # noqa: E402

PAGE = "playground"
FIELDS = controls.playground_fields()
BY_KEY = {f.key: f for f in FIELDS}


def _apply_click() -> None:
    """A click on the contour (reported by the chart as data coordinates) sets the start there."""
    event = st.session_state.get(f"{PAGE}:chart")
    click = event.get("click") if hasattr(event, "get") else None
    if not isinstance(click, dict):
        return
    x, y = click.get("x"), click.get("y")
    if not isinstance(x, (int, float)) or not isinstance(y, (int, float)):
        return
    st.session_state[state.widget_key(PAGE, "x0")] = round(float(x), 4)
    st.session_state[state.widget_key(PAGE, "y0")] = round(float(y), 4)


def url_fields(values: dict) -> list[state.Field]:
    """The fields that matter for this setting (parameters of the chosen landscape and optimizers)."""
    return controls.setting_fields(FIELDS, values["ls"], lambda name, _: name in values["opts"])


errors = state.load(PAGE, FIELDS)
_apply_click()

for e in errors:
    st.warning(plain(e))

with st.sidebar:
    st.header("Setting")
    values = controls.landscape_controls(PAGE, BY_KEY, on_change=controls.start_resetter(PAGE))
    values |= controls.run_controls(PAGE, BY_KEY)
    names = list(OPTIMIZERS)
    values["opts"] = st.multiselect("Optimizers", names, key=state.ensure(PAGE, BY_KEY["opts"]),
                                    format_func=lambda n: OPTIMIZERS[n].title,
                                    help="Any optimizer of the library; each gets its own controls below.")
    values["fair"] = st.radio("Fair comparison", list(controls.FAIR_MODES), key=state.ensure(PAGE, BY_KEY["fair"]),
                              format_func=controls.FAIR_MODES.get, horizontal=True,
                              help="Equal path length: each lr is solved so that every path is as long as "
                                   "Adam's (or the first optimizer's). Equal forward passes: every optimizer "
                                   "gets the same number of loss evaluations.")
    values["colour"] = st.radio("Colour scale", controls.COLOUR_MODES, key=state.ensure(PAGE, BY_KEY["colour"]),
                                horizontal=True, help="auto: log where the landscape spans many orders of magnitude.")
    values["surface3d"] = st.toggle("3-D surface too", key=state.ensure(PAGE, BY_KEY["surface3d"]),
                                    help="Adds a tab with the same runs on a rotatable 3-D surface.")
    for n in values["opts"]:
        with st.expander(OPTIMIZERS[n].title, expanded=False):
            st.caption(OPTIMIZERS[n].summary)
            for k, v in controls.optimizer_controls(PAGE, n).items():
                values[f"{n}.{k}"] = v

# Values of fields without a widget this run (other landscapes' parameters, unchosen optimizers).
for f in FIELDS:
    values.setdefault(f.key, state.value(PAGE, f))
state.save(PAGE, url_fields(values), values)

if values["ls"] in landscapes.LANDSCAPES:
    ls = landscapes.LANDSCAPES[values["ls"]]
    notes.markdown(f"**{ls.title}** — {ls.notes}")
if not values["opts"]:
    st.error("Choose at least one optimizer in the sidebar.")
else:
    views.playground_results(values, key=PAGE, click=True, show_3d=values["surface3d"], stored=stored)
if stored is not None:
    stored.empty()  # whatever the live run drew (or could not), the stored picture goes
