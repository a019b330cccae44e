"""Lessons: a short text, the claim and its verdict (computed from the runs shown), the rule behind every
learning rate, one button that loads the exact setting, and the figure (computed live).

The lessons themselves (setting, rules, claims) are data in ``app/lessons.py``; this page only shows
them. ``python -m app.lessons check`` evaluates the same claims on the same numbers.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from app import chart, compute, controls, state, views
from app import figures as F
from app import lessons as L
from app.text import plain

PAGE = "lessons"
SLUGS = [lesson.slug for lesson in L.LESSONS]
FIELDS = [state.choice_field("lesson", SLUGS[0], SLUGS, "Which lesson"),
          state.int_field("seed", 0, 0, controls.MAX_SEED, help="First seed"),
          state.int_field("seeds", 8, 1, 16, help="How many seeds (repeats) the claim is measured over")]
BY_KEY = {f.key: f for f in FIELDS}
EXTRAPOLATE = (1_000_000, 125_000_000, 1_300_000_000, 13_000_000_000)


def show_verdict(box, lesson: L.Lesson, values: dict) -> None:
    """The claim of the lesson in words and, for each part, the verdict from the measured numbers."""
    results = L.evaluate(lesson, values)
    with box:
        st.markdown("**The claim**, checked on the seeds below:")
        for r in results:
            text = f"**Claim:** {r.statement}.  \n{r.sentence}"
            (st.success if r.holds else st.warning)(text, icon="✅" if r.holds else "⚠️")


def show_rules(lesson: L.Lesson) -> None:
    lines = []
    for subject, rule in lesson.rules.items():
        try:
            lr = L.rule_lr(lesson, subject)
        except KeyError:
            lines.append(f"- {L.subject_label(lesson, subject)}: no calibrated lr yet")
            continue
        lines.append(f"- {L.subject_label(lesson, subject)}: lr = {lr:.4g}, {rule.describe()}")
    if lines:
        st.caption("**Learning rates** (no lr is picked by hand; each comes from a rule computed by the engine):\n"
                   + "\n".join(lines))


def page_values(lesson: L.Lesson, first: int, count: int) -> tuple[dict, dict]:
    """The lesson's setting for the chosen seeds: URL values (for the button) and typed values."""
    params = L.setting(lesson, first, count)
    fields = controls.playground_fields() if lesson.page == "playground" else controls.compare_fields()
    values, bad = controls.setting_from_params(fields, params)
    for b in bad:  # a lesson's own setting is checked like a link
        st.error(plain(b))
    return params, values


@st.cache_data(max_entries=32, show_spinner=False)
def snapshot(step: int, lr: float, seed: int):
    lesson = L.LESSONS_BY_SLUG["rebuild"]
    from landscapes.inside import moment_snapshot

    return moment_snapshot(L.extra_landscape(lesson), step, {"lr": lr}, seed=seed)


@st.cache_data(max_entries=32, show_spinner=False)
def draws(seeds: tuple[int, ...]):
    lesson = L.LESSONS_BY_SLUG["spsa"]
    from landscapes.inside import spsa_draws

    return [spsa_draws(L.extra_landscape(lesson), tuple(lesson.extra["point"]), int(lesson.extra["draws"]),
                       float(lesson.extra["eps"]), s) for s in seeds]


def trajectory_lesson(lesson: L.Lesson, values: dict, box) -> None:
    if lesson.page == "playground":
        out = views.playground_results(values, key=f"lessons:{lesson.slug}", downloads=False, show_3d=False)
        runs = {r.name: r.runs for r in (out or {}).get("results", [])}
    else:
        out = views.compare_results(values, key=f"lessons:{lesson.slug}", downloads=False)
        runs = {f"{n}[{controls.fmt(v)}]": r.runs for n, v, r in (out or {}).get("runs", [])}
    if not out:
        return
    ls = compute.build_landscape(controls.landscape_key_of(values))
    try:
        measured = L.trajectory_values(lesson, runs, ls)
    except ValueError as exc:
        box.error(plain(f"The claim could not be measured: {exc}"))
        return
    show_verdict(box, lesson, measured)


def moments_lesson(lesson: L.Lesson, first: int, count: int, box) -> None:
    lr = L.rule_lr(lesson, "adamezo")
    late = int(lesson.extra["late"])
    step = st.slider("Step", 1, 3 * int(lesson.extra["step"]), int(lesson.extra["step"]), key="lessons:rebuild:step",
                     help="The step whose moments are rebuilt. Up to K = 10 they equal ZO-Adam's; after that "
                          "AdaMeZO forgets the oldest pair at every step.")
    snap = snapshot(step, lr, first)
    ls = L.extra_landscape(lesson)
    surf = compute.surface(controls.landscape_key(ls.name, dict(ls.params)), 120, "auto")
    import landscapes

    path = landscapes.run_trajectory(ls, "adamezo", step, {"lr": lr}, seed=first)
    left, right = F.moments_figures(surf, path.xy, snap, colour=F.colour_for("adamezo"),
                                    stored_colour=F.colour_for("zo-adam"))
    chart.plotly_charts([left, right], key="lessons:rebuild:figure", basis=[420, 380],
                        titles=[f"The {len(snap.pairs)} directions AdaMeZO regenerates at step {step}",
                                "Moments: rebuilt by AdaMeZO, stored by ZO-Adam"])
    rows = [{"k (0 = newest)": k, "seed": str(s), "c": c, "a_k (weight in m)": float(snap.weights_m[k]),
             "b_k (weight in v)": float(snap.weights_v[k]), "z (x)": float(snap.directions[k, 0]),
             "z (y)": float(snap.directions[k, 1])} for k, (s, c) in enumerate(snap.pairs)]
    st.markdown(f"What AdaMeZO keeps at step {step}: **{len(snap.pairs)} (seed, c) pairs, "
                f"{snap.adamezo_bytes} bytes**; every z below is regenerated from its seed "
                f"(`optimizer.direction(seed)`). Relative difference from ZO-Adam's stored moments at this step: "
                f"**{snap.relative_difference():.1e}**.")
    st.dataframe(rows, hide_index=True, key="lessons:rebuild:pairs",
                 column_config={c: st.column_config.NumberColumn(format="%.4g")
                                for c in ("c", "a_k (weight in m)", "b_k (weight in v)", "z (x)", "z (y)")})
    seeds = list(range(first, first + count))
    values = {"moment_gap": {
        "adamezo": [snapshot(int(lesson.extra["step"]), lr, s).relative_difference() for s in seeds],
        "adamezo@late": [snapshot(late, lr, s).relative_difference() for s in seeds]}}
    show_verdict(box, lesson, values)


def spsa_lesson(lesson: L.Lesson, first: int, count: int, box) -> None:
    seeds = tuple(range(first, first + count))
    ds = draws(seeds)
    left, right = F.spsa_figures(ds, colour=F.colour_for("mezo"))
    chart.plotly_charts([left, right], key="lessons:spsa:figure", basis=[420, 380],
                        titles=[f"{sum(len(d.c) for d in ds)} estimates c·z of ∇f",
                                "Error of the average of n estimates"])
    grad = ds[0].gradient
    st.markdown(f"At θ = {tuple(lesson.extra['point'])} on Rosenbrock, ∇f = ({grad[0]:.4g}, {grad[1]:.4g}); "
                f"{lesson.extra['draws']} draws per seed with MeZO's own directions (ε = {lesson.extra['eps']:g}).")
    pooled = np.concatenate([d.estimates for d in ds]).mean(axis=0)
    values = {"mean_error": {"mezo": [float(np.linalg.norm(pooled - grad) / np.linalg.norm(grad))]},
              "single_error": {"mezo": [float(np.median(d.single_errors())) for d in ds]}}
    show_verdict(box, lesson, values)


def memory_lesson(lesson: L.Lesson, box) -> None:
    measured = compute.measured_state_bytes(tuple(lesson.extra["sizes"]), int(lesson.extra["horizon"]))
    rows = measured + compute.extrapolated_state_bytes(measured, EXTRAPOLATE)
    chart.plotly_chart(F.memory_figure(rows), key="lessons:memory", title="Optimizer state by model size")
    table = [{"optimizer": r["label"], "parameters": f"{r['params']:,}", "state": F.human_bytes(r["state_bytes"]),
              "bytes": r["state_bytes"], "bytes per parameter": r["state_bytes"] / r["params"],
              "source": "measured" if r["measured"] else "extrapolated"} for r in rows
             if r["params"] in (100_000, 1_300_000_000, 13_000_000_000)]
    st.dataframe(table, hide_index=True, key="lessons:memtable")
    st.markdown("**The paper's Table 1, from the library's own numbers** (P: the float32 weights; the state "
                "measured above, as copies of P plus fixed bytes; forward passes per step with one direction):")
    st.dataframe(L.paper_table(measured), hide_index=True, key="lessons:table1")
    values = {"state_bytes": {f"{r['optimizer']}@{r['params']}": [float(r["state_bytes"])] for r in measured}}
    show_verdict(box, lesson, values)
    if st.button("Open the LLM page with MeZO and AdaMeZO", key="lessons:load:memory", type="primary",
                 help="Two runs: the most this machine starts at once on the CPU."):
        st.switch_page("app_pages/llm.py", query_params={state.VIEW_KEY: "llm", "opts": "mezo,adamezo"})


errors = state.load(PAGE, FIELDS)
st.title("Lessons")
for e in errors:
    st.warning(plain(e))
titles = {lesson.slug: lesson.title for lesson in L.LESSONS}
with st.sidebar:
    st.header("Lesson")
    slug = st.radio("Lesson", SLUGS, key=state.ensure(PAGE, BY_KEY["lesson"]), format_func=titles.get,
                    label_visibility="collapsed")
    lesson = L.LESSONS_BY_SLUG[slug]
    c1, c2 = st.columns(2)
    first = int(c1.number_input("first seed", 0, controls.MAX_SEED, key=state.ensure(PAGE, BY_KEY["seed"]), step=1,
                                help="The claim is measured over this seed and the next ones."))
    count = int(c2.number_input("seeds", 1, 16, key=state.ensure(PAGE, BY_KEY["seeds"]), step=1,
                                help="How many seeds (repeats); the lessons are checked on 8."))
state.save(PAGE, FIELDS, {"lesson": slug, "seed": first, "seeds": count})

st.header(lesson.title)
st.markdown(lesson.text())
verdict = st.container()
show_rules(lesson)
if lesson.kind == "memory":
    memory_lesson(lesson, verdict)
else:
    params, values = page_values(lesson, first, count)
    label = "Playground" if lesson.page == "playground" else "Compare page"
    if st.button(f"Load this setting in the {label}", key=f"lessons:load:{slug}", type="primary"):
        st.switch_page(f"app_pages/{lesson.page}.py", query_params={state.VIEW_KEY: lesson.page} | params)
    if lesson.kind in ("playground", "compare"):
        trajectory_lesson(lesson, values, verdict)
    elif lesson.kind == "moments":
        moments_lesson(lesson, first, count, verdict)
    elif lesson.kind == "spsa":
        spsa_lesson(lesson, first, count, verdict)
