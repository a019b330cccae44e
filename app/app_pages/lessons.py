"""Lessons: a short text, one button that loads the exact setting, and the figure (computed live)."""

from __future__ import annotations

import math

import streamlit as st

from app import chart, compute, controls, state, views
from app import figures as F
from app.presets import LESSONS, lesson_text

PAGE = "lessons"
SLUGS = [lesson["slug"] for lesson in LESSONS]
FIELDS = [state.choice_field("lesson", SLUGS[0], SLUGS, "Which lesson")]
TARGET = {"playground": ("app_pages/playground.py", controls.playground_fields),
          "compare": ("app_pages/compare.py", controls.compare_fields)}
EXTRAPOLATE = (1_000_000, 125_000_000, 1_300_000_000, 13_000_000_000)


def verdict_playground(out: dict) -> str:
    """A sentence that says, from the numbers, which optimizer ended lowest (median over seeds)."""
    finals = [(r.summary.median_final, r.label) for r in out["results"]]
    finals.sort(key=lambda t: (math.isnan(t[0]), t[0]))
    text = ", ".join(f"{label} {value:.3g}" for value, label in finals)
    return f"**Median final loss over seeds:** {text}. Lowest here: **{finals[0][1]}**."


def verdict_compare(out: dict) -> str:
    best = out["rows"][0]
    return (f"**Best value here:** {best['value']} (median final loss {best['median final loss']:.3g}, "
            f"seeds ranging {best['best seed']:.3g} to {best['worst seed']:.3g}).")


def memory_lesson() -> None:
    measured = compute.measured_state_bytes()
    rows = measured + compute.extrapolated_state_bytes(measured, EXTRAPOLATE)
    chart.plotly_chart(F.memory_figure(rows), key="lessons:memory")
    table = [{"optimizer": r["label"], "parameters": f"{r['params']:,}", "state": F.human_bytes(r["state_bytes"]),
              "bytes": r["state_bytes"], "bytes per parameter": r["state_bytes"] / r["params"],
              "source": "measured" if r["measured"] else "extrapolated"} for r in rows
             if r["params"] in (100_000, 1_300_000_000, 13_000_000_000)]
    st.dataframe(table, hide_index=True, key="lessons:memtable")
    ada = [r for r in rows if r["optimizer"] == "adamezo"]
    st.markdown(f"AdaMeZO's state is **{ada[0]['state_bytes']} bytes** at every size (K = 10 pairs of "
                "(seed, c)); Adam's and ZO-Adam's grow with the model. In the LLM page the same numbers appear "
                "live as *optimizer-state bytes*.")
    if st.button("Open the LLM page with these optimizers", key="lessons:load:memory", type="primary"):
        st.switch_page("app_pages/llm.py", query_params={state.VIEW_KEY: "llm", "opts": "mezo,adamezo,zo-adam,adam"})


errors = state.load(PAGE, FIELDS)
st.title("Lessons")
for e in errors:
    st.warning(e)
titles = {lesson["slug"]: lesson["title"] for lesson in LESSONS}
slug = st.radio("Lesson", SLUGS, key=state.ensure(PAGE, FIELDS[0]), format_func=titles.get, horizontal=True,
                label_visibility="collapsed")
state.save(PAGE, FIELDS, {"lesson": slug})
lesson = next(item for item in LESSONS if item["slug"] == slug)

st.header(lesson["title"])
st.markdown(lesson_text(slug))
if lesson["page"] == "memory":
    memory_lesson()
else:
    path, fields_of = TARGET[lesson["page"]]
    label = "Playground" if lesson["page"] == "playground" else "Compare page"
    if st.button(f"Load this setting in the {label}", key=f"lessons:load:{slug}", type="primary"):
        st.switch_page(path, query_params={state.VIEW_KEY: lesson["page"]} | lesson["params"])
    values, bad = controls.setting_from_params(fields_of(), lesson["params"])
    for b in bad:  # a lesson's own setting is checked like a link
        st.error(b)
    if lesson["page"] == "playground":
        out = views.playground_results(values, key=f"lessons:{slug}", downloads=False, show_3d=False)
        if out:
            st.markdown(verdict_playground(out))
    else:
        out = views.compare_results(values, key=f"lessons:{slug}", downloads=False)
        if out:
            st.markdown(verdict_compare(out))
