"""LLM fine-tune: start runs in the background, watch them live, stop them; reloads find them again.

Runs are ``python -m llm_demo.finetune`` subprocesses started by ``llm_demo.runs.start_run``; this
page only reads their run folders (``metrics.jsonl``), so a run outlives the browser tab. The model and
task paths of a link are checked by ``llm_demo.paths`` (the bundled assets and the operator's roots only);
a run can be stopped from the session that started it (its stop token lives in the session state).
"""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from optimizers import OPTIMIZERS

from app import chart, controls, state
from app import figures as F
from app.text import plain

try:
    from llm_demo import paths as P
    from llm_demo import runs as R
    from llm_demo.finetune import DEMO_DEFAULTS
    from llm_demo.tasks import BUNDLED_MODEL, BUNDLED_TASK
    IMPORT_ERROR = None
except Exception as exc:  # noqa: BLE001 - the page explains instead of crashing
    IMPORT_ERROR = exc

PAGE = "llm"
REFRESH_S = 2.0
NAMES = list(OPTIMIZERS)


def runs_dir() -> Path:
    """Where runs live: ``$ADAMEZO_RUNS_DIR`` if set when the page runs, else the library's default."""
    return Path(os.environ.get("ADAMEZO_RUNS_DIR") or R.RUNS_DIR)


def llm_defaults(name: str) -> dict:
    return OPTIMIZERS[name].defaults() | DEMO_DEFAULTS.get(name, {})


def fields() -> list[state.Field]:
    out = [
        state.list_field("opts", ["mezo", "adamezo"], NAMES, min_len=1, help="Optimizers to run side by side"),
        state.int_field("steps", 400, 1, 100_000, help="Steps per run"),
        state.int_field("seed", 0, 0, 10**6),
        state.int_field("batch", 16, 1, 512, help="Batch size"),
        state.int_field("eval_every", 50, 1, 100_000, help="Evaluate on the dev set every N steps"),
        state.choice_field("device", "auto", ["auto", "cpu", "cuda"]),
        state.text_field("model", "", 500, help="Model folder; empty: the bundled tiny OPT"),
        state.text_field("data", "", 500, help="Task folder or JSONL file; empty: the bundled task"),
    ]
    for name in NAMES:
        out += state.optimizer_fields(name, llm_defaults(name))
    return out


def url_fields(all_fields, values):
    return [f for f in all_fields if "." not in f.key or f.key.split(".", 1)[0] in values["opts"]]


def start_runs(values: dict) -> list[str]:
    """Start one run per chosen optimizer; return one message per run that could not start."""
    try:  # only the bundled assets and the operator's roots; the same answer whether a path exists or not
        model = P.check_app_path(values["model"], "model", P.app_roots("model"))
        data = P.check_app_path(values["data"], "data", P.app_roots("data"))
    except ValueError as exc:
        return [f"No run started: {exc}"]
    problems = []
    for name in values["opts"]:
        hyper = {k: values[f"{name}.{k}"] for k in state.optimizer_specs(name)}
        try:
            info = R.start_run(name, steps=int(values["steps"]), hyper=hyper, model=model, data=data,
                               device=values["device"], seed=int(values["seed"]),
                               batch_size=int(values["batch"]), eval_every=int(values["eval_every"]),
                               runs_dir=runs_dir())
            st.session_state.setdefault("llm:mine", []).append(info.name)
            st.session_state.setdefault("llm:tokens", {})[str(info.path)] = info.token
        except ValueError as exc:
            problems.append(f"{OPTIMIZERS[name].title} did not start: {exc}")
    return problems


def records_of(run) -> tuple[list[dict], int]:
    """All records of a run, read incrementally (each call reads only what was appended), and how many
    unreadable lines were skipped."""
    cache = st.session_state.setdefault("llm:records", {})
    records, cursor, skipped = cache.get(str(run.path), ([], None, 0))
    got = R.read_records(run.path, cursor)
    if got.restarted:  # the file was rewritten (a resumed run): start again
        records, skipped = [], 0
    records = records + got.records
    skipped += got.skipped
    cache[str(run.path)] = (records, got.cursor, skipped)
    return records, skipped


def counters(run, records: list[dict]) -> dict:
    """Forward passes, steps per second, peak memory, optimizer-state bytes, progress and ETA."""
    last = records[-1] if records else (run.last or {})
    step = int(last.get("step", 0))
    wall = float(last.get("wall_time_s", 0.0) or 0.0)
    rate = step / wall if wall > 0 else 0.0
    remaining = max(run.steps - step, 0)
    eta = remaining / rate if rate > 0 and run.status == "running" else None
    evals = [r for r in records if r.get("eval_accuracy") is not None]
    return {"step": step, "forward_passes": int(last.get("forward_passes", 0)), "steps_per_s": rate,
            "peak_memory_bytes": int(last.get("peak_memory_bytes", 0) or 0),
            "optimizer_state_bytes": int(last.get("optimizer_state_bytes", 0) or 0),
            "progress": min(1.0, step / run.steps) if run.steps else 0.0, "eta_s": eta,
            "eval_accuracy": evals[-1]["eval_accuracy"] if evals else None}


def fmt_eta(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    m, s = divmod(int(round(seconds)), 60)
    return f"{m} min {s:02d} s" if m else f"{s} s"


@st.fragment(run_every=REFRESH_S)
def live() -> None:
    """The runs, refreshed every couple of seconds while this page is open."""
    all_runs = R.list_runs(runs_dir())
    running = [r for r in all_runs if r.status == "running"]
    if not all_runs:
        st.caption(f"No runs yet in {runs_dir()}. Start some above.")
        return
    names = [r.name for r in all_runs]
    mine = [n for n in st.session_state.get("llm:mine", []) if n in names]
    default = mine or [r.name for r in running] or names[:2]
    key = "llm:show"
    if key in st.session_state:
        st.session_state[key] = [n for n in st.session_state[key] if n in names]
    else:
        st.session_state[key] = default[:6]
    shown_names = st.multiselect("Runs to show", names, key=key,
                                 help="Every run in the runs folder, newest first; running ones keep going "
                                      "when you close the tab.")
    st.caption(f"{len(running)} running · {len(all_runs)} runs in {runs_dir()} · refreshed every {REFRESH_S:g} s")
    shown = [r for r in all_runs if r.name in shown_names]
    series = []
    for i, run in enumerate(shown):
        opt = run.config.get("optimizer", "?")
        records, skipped = records_of(run)
        c = counters(run, records)
        title = OPTIMIZERS[opt].title if opt in OPTIMIZERS else opt
        series.append({"label": f"{title} · {run.name}", "colour": F.colour_for(opt, i), "records": records})
        with st.container(border=True):
            head, stop = st.columns([5, 1])
            head.markdown(f"**{run.name}** — {title}, {run.steps} steps · status **{run.status}**")
            token = st.session_state.get("llm:tokens", {}).get(str(run.path))
            if run.status == "running" and token:
                if stop.button("Stop", key=f"llm:stop:{run.name}"):
                    try:
                        R.stop_run(run.path, token)
                        st.toast(f"Asked {run.name} to stop; it saves a checkpoint first.")
                    except ValueError as exc:
                        st.error(plain(exc))
            elif run.status == "running":
                stop.caption("started by another session: only that session can stop it")
            st.progress(c["progress"], text=f"step {c['step']} / {run.steps} · ETA {fmt_eta(c['eta_s'])}")
            m = st.columns(5)
            m[0].metric("forward passes", f"{c['forward_passes']:,}")
            m[1].metric("steps / s", f"{c['steps_per_s']:.2f}")
            m[2].metric("peak memory", F.human_bytes(c["peak_memory_bytes"]))
            m[3].metric("optimizer state", F.human_bytes(c["optimizer_state_bytes"]))
            m[4].metric("dev accuracy", "—" if c["eval_accuracy"] is None else f"{c['eval_accuracy']:.3f}")
            if run.status == "failed" and run.error:
                st.error(plain(f"{run.name} failed: {run.error}"))
            if skipped:
                st.caption(f"{skipped} unreadable line(s) of its metrics.jsonl were skipped.")
            if records:
                st.download_button("Records (CSV)", lambda records=records: F.records_csv(records),
                                   file_name=f"{run.name}.csv", mime="text/csv", key=f"llm:csv:{run.name}",
                                   on_click="ignore")
    if series:
        c1, c2 = st.columns(2)
        with c1:
            chart.plotly_chart(F.llm_figure(series, "train_loss", title="Training loss against forward passes"),
                               key="llm:loss")
        with c2:
            chart.plotly_chart(F.llm_figure(series, "eval_accuracy", title="Dev accuracy against forward passes"),
                               key="llm:acc")


st.title("LLM fine-tune")
if IMPORT_ERROR is not None:
    st.error(plain(f"The LLM demo could not be loaded ({IMPORT_ERROR}); the other pages still work."))
    st.stop()

FIELDS = fields()
BY_KEY = {f.key: f for f in FIELDS}
errors = state.load(PAGE, FIELDS)
st.caption("Fine-tune a causal language model with zeroth-order optimizers (forward passes only) or Adam, side by "
           "side. Runs go on in the background; reload the page to find them again.")
for e in errors:
    st.warning(plain(e))

with st.sidebar:
    st.header("New runs")
    values: dict = {}
    values["opts"] = st.multiselect("Optimizers", NAMES, key=state.ensure(PAGE, BY_KEY["opts"]),
                                    format_func=lambda n: OPTIMIZERS[n].title)
    c1, c2 = st.columns(2)
    values["steps"] = c1.number_input("steps", 1, 100_000, key=state.ensure(PAGE, BY_KEY["steps"]), step=50)
    values["seed"] = c2.number_input("seed", 0, 10**6, key=state.ensure(PAGE, BY_KEY["seed"]), step=1)
    c1, c2 = st.columns(2)
    values["batch"] = c1.number_input("batch size", 1, 512, key=state.ensure(PAGE, BY_KEY["batch"]), step=1)
    values["eval_every"] = c2.number_input("evaluate every", 1, 100_000, key=state.ensure(PAGE, BY_KEY["eval_every"]),
                                           step=10)
    values["device"] = st.radio("device", ["auto", "cpu", "cuda"], key=state.ensure(PAGE, BY_KEY["device"]),
                                horizontal=True)
    values["model"] = st.text_input("model folder", key=state.ensure(PAGE, BY_KEY["model"]),
                                    placeholder=f"bundled: {Path(BUNDLED_MODEL).name}")
    values["data"] = st.text_input("task (folder or JSONL)", key=state.ensure(PAGE, BY_KEY["data"]),
                                   placeholder=f"bundled: {Path(BUNDLED_TASK).name}")
    for n in values["opts"]:
        with st.expander(OPTIMIZERS[n].title):
            for k, v in controls.optimizer_controls(PAGE, n, base=llm_defaults(n)).items():
                values[f"{n}.{k}"] = v
for f in FIELDS:
    values.setdefault(f.key, state.value(PAGE, f))
state.save(PAGE, url_fields(FIELDS, values), values)

family, limit = R.device_slot(values["device"])
where = "on the CPU" if family == "cpu" else "on this CUDA device"
busy = R.slots_in_use(runs_dir(), family, limit)
free = limit - busy
if free <= 0:
    st.info(f"{busy} runs are already running {where} (the limit is {limit}). Stop one or wait for one "
            "to finish before starting more.")
elif len(values["opts"]) > free:
    st.info(f"Only {free} more run(s) can start {where} now (the limit is {limit} at a time); "
            f"the first {free} chosen optimizer(s) will start, the others will be refused.")
if st.button("▶ Start runs", type="primary", disabled=not values["opts"], key="llm:start"):
    for problem in start_runs(values):
        st.error(plain(problem))
    st.session_state.pop("llm:show", None)

live()
