"""LLM fine-tune: a race of optimizers on a real (tiny) model, live: loss and accuracy against forward
passes, steps or time, who is ahead, and memory by category (measured, and extrapolated to OPT sizes).

Runs are ``python -m llm_demo.finetune`` subprocesses started by ``llm_demo.runs.start_run``; this page
only reads their run folders (``metrics.jsonl``), so a run outlives the browser tab, and a stopped one can
be resumed (``llm_demo.runs.resume_run``). The model and task paths of a link are checked by
``llm_demo.paths`` (the bundled assets and the operator's roots only); a run can be stopped from the
session that started (or resumed) it: its stop token lives in the session state.
"""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from optimizers import OPTIMIZERS

from app import chart, controls, state
from app import figures as F
from app import llm_figures as LF
from app.text import plain

try:
    from llm_demo import memory as M
    from llm_demo import paths as P
    from llm_demo import runs as R
    from llm_demo.finetune import DEMO_DEFAULTS
    from llm_demo.tasks import BUNDLED_MODEL, BUNDLED_TASKS
    IMPORT_ERROR = None
except Exception as exc:  # noqa: BLE001 - the page explains instead of crashing
    IMPORT_ERROR = exc

PAGE = "llm"
REFRESH_S = 2.0
NAMES = list(OPTIMIZERS)
TASK_TITLES = {"graded": "graded: negative / mixed / positive (3-way)", "sentiment": "sentiment: negative / positive"}

# The page's defaults are the race of the README (python -m benchmarks.llm_finetune race, 3 seeds, 2026-11-30)
# on the graded task, where zero-shot is far from the ceiling and no zeroth-order method saturates in 1000 steps:
# the same budget, and each optimizer's best lr on its grid by dev loss, the same on every seed (MeZO 3e-4 of
# 1e-4/3e-4/1e-3; AdaMeZO its default 1e-3 of 3e-4/1e-3/3e-3; ZO-Adam 1e-3 of 3e-4/1e-3/3e-3; HiZOO 3e-4 of
# 1e-4/3e-4/1e-3). Adam, the reference, ends at 0.87-0.91 test accuracy with any lr of 3e-5/1e-4/3e-4: 1e-4.
PAGE_STEPS = 1000
PAGE_EVAL_EVERY = 25
RACE_NOTE = ("Measured on the graded task (the README's race, 3 seeds, 1000 steps, each optimizer at its best lr): "
             "**AdaMeZO does not beat MeZO here**. It needs 1.03 × MeZO's forward passes for the same dev loss "
             "(median) and never reaches MeZO's best dev loss within the budget; final test accuracy 77.5 % "
             "against 78.8 %, from 44.3 % zero-shot. First-order Adam reaches 89 %.")
PAGE_LRS = {"mezo": 3e-4, "adamezo": 1e-3, "zo-adam": 1e-3, "hizoo": 3e-4, "adam": 1e-4}
MEMORY_VIEWS = ["bundled model (measured)", "OPT-125m", "OPT-1.3B", "OPT-13B"]
LORA_MAX_RANK = 256
LORA_NOTE = ("LoRA needs its own, larger lr than fine-tuning all weights: set it in each optimizer's settings. "
             "On the graded task (README, 'LoRA through peft') MeZO and AdaMeZO did best at 3e-3 with rank 8, and "
             "both ended below full fine-tuning.")


def runs_dir() -> Path:
    """Where runs live: ``$ADAMEZO_RUNS_DIR`` if set when the page runs, else the library's default."""
    return Path(os.environ.get("ADAMEZO_RUNS_DIR") or R.RUNS_DIR)


def llm_defaults(name: str) -> dict:
    lr = {"lr": PAGE_LRS[name]} if name in PAGE_LRS else {}
    return OPTIMIZERS[name].defaults() | DEMO_DEFAULTS.get(name, {}) | lr


def fields() -> list[state.Field]:
    out = [
        state.list_field("opts", ["mezo", "adamezo"], NAMES, min_len=1, help="Optimizers to run side by side"),
        state.choice_field("task", "graded", list(BUNDLED_TASKS), help="The bundled task (when no task path is given)"),
        state.int_field("steps", PAGE_STEPS, 1, 100_000, help="Steps per run"),
        state.int_field("seed", 0, 0, 10**6),
        state.int_field("batch", 16, 1, 512, help="Batch size"),
        state.int_field("eval_every", PAGE_EVAL_EVERY, 1, 100_000, help="Evaluate on the dev set every N steps"),
        state.int_field("lora", 0, 0, LORA_MAX_RANK, help="LoRA rank (peft adapters on q_proj and v_proj); 0: "
                                                        "fine-tune all weights"),
        state.choice_field("device", "auto", ["auto", "cpu", "cuda"]),
        state.int_field("processes", 1, 1, 64, help="Data-parallel processes per run (torchrun): CPU 1 or 2, CUDA "
                                                   "up to the number of GPUs; each takes a run slot"),
        state.text_field("model", "", 500, help="Model folder; empty: the bundled tiny OPT"),
        state.text_field("data", "", 500, help="Task folder or JSONL file; empty: the bundled task chosen above"),
        state.choice_field("x", "forward_passes", list(LF.X_AXES), help="The charts' x axis"),
        state.float_field("smooth", 0.8, 0.0, 0.99, help="EMA smoothing of the training loss (0: raw)"),
        state.choice_field("mem", MEMORY_VIEWS[0], MEMORY_VIEWS, help="Memory of the bundled model or extrapolated"),
    ]
    for name in NAMES:
        out += state.optimizer_fields(name, llm_defaults(name))
    return out


def url_fields(all_fields, values):
    return [f for f in all_fields if "." not in f.key or f.key.split(".", 1)[0] in values["opts"]]


def task_path(values: dict) -> Path:
    """The task a new run trains on: the checked ``data`` path, else the chosen bundled task."""
    data = P.check_app_path(values["data"], "data", P.app_roots("data"))
    return data if data is not None else BUNDLED_TASKS[values["task"]]


MESSAGE_S = 20.0  # how long an action's error stays on the page (the fragment redraws every REFRESH_S)


def say(where: str, message: str) -> None:
    """Keep an action's error for MESSAGE_S seconds: the next refresh would otherwise erase it."""
    import time

    st.session_state.setdefault("llm:messages", {})[where] = (message, time.time())


def show_messages(where: str) -> None:
    import time

    kept = st.session_state.get("llm:messages", {})
    message = kept.get(where)
    if message is not None and time.time() - message[1] < MESSAGE_S:
        st.error(plain(message[0]))


def _keep(info) -> None:
    st.session_state.setdefault("llm:mine", []).append(info.name)
    st.session_state.setdefault("llm:tokens", {})[str(info.path)] = info.token


def start_runs(values: dict, names: list[str] | None = None) -> list[str]:
    """Start one run per chosen optimizer (or per ``names``); return one message per run that could not start."""
    try:  # only the bundled assets and the operator's roots; the same answer whether a path exists or not
        model = P.check_app_path(values["model"], "model", P.app_roots("model"))
        data = task_path(values)
    except ValueError as exc:
        return [f"No run started: {exc}"]
    problems = []
    for name in names or values["opts"]:
        hyper = {k: values.get(f"{name}.{k}", llm_defaults(name)[k]) for k in state.optimizer_specs(name)}
        try:
            _keep(R.start_run(name, steps=int(values["steps"]), hyper=hyper, model=model, data=data,
                              device=values["device"], seed=int(values["seed"]), batch_size=int(values["batch"]),
                              eval_every=int(values["eval_every"]), lora_r=int(values["lora"]) or None,
                              runs_dir=runs_dir(), processes=int(values["processes"])))
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
    """Forward passes, steps per second, memory, progress and ETA."""
    last = records[-1] if records else (run.last or {})
    step = int(last.get("step", 0))
    wall = float(last.get("wall_time_s", 0.0) or 0.0)
    rate = step / wall if wall > 0 else 0.0
    remaining = max(run.steps - step, 0)
    eta = remaining / rate if rate > 0 and run.status == "running" else None
    evals = [r for r in records if r.get("eval_accuracy") is not None]
    memory = last.get("memory") if isinstance(last.get("memory"), dict) else {}
    return {"step": step, "forward_passes": int(last.get("forward_passes", 0)), "steps_per_s": rate,
            "peak_memory_bytes": int(last.get("peak_memory_bytes", 0) or 0),
            "tensor_peak_bytes": int(memory.get("peak_total", 0) or 0),
            "optimizer_state_bytes": int(last.get("optimizer_state_bytes", 0) or 0),
            "progress": min(1.0, step / run.steps) if run.steps else 0.0, "eta_s": eta,
            "eval_accuracy": evals[-1]["eval_accuracy"] if evals else None,
            "test_accuracy": last.get("test_accuracy")}


def fmt_eta(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    m, s = divmod(int(round(seconds)), 60)
    return f"{m} min {s:02d} s" if m else f"{s} s"


def labels_for(runs: list) -> dict[str, str]:
    """A readable, unique label per run: "AdaMeZO · lr 0.001 · seed 0" (+ its task when not the graded one,
    + the folder's number when the same setting ran twice)."""
    base = {}
    for r in runs:
        label = R.run_label(r.config)
        task = Path(str(r.config.get("data", ""))).name
        if task and task != "graded":
            label += f" · {task}"
        base[r.name] = label
    counts: dict[str, int] = {}
    for label in base.values():
        counts[label] = counts.get(label, 0) + 1
    out = {}
    for r in sorted(runs, key=lambda r: r.started_at):
        label = base[r.name]
        if counts[label] > 1:
            suffix = r.name.rsplit("-", 1)[-1]
            label += f" (run {suffix if suffix.isdigit() else 1})"
        out[r.name] = label
    return out


@st.cache_data(show_spinner=False, max_entries=64)
def _source_facts(model_dir: str) -> dict:
    """The bundled (or chosen) model's facts for the extrapolation, from its configuration on the meta device."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_dir, local_files_only=True))
    return M.model_facts(model)


@st.cache_data(show_spinner=False, max_entries=64)
def _passes(size: str, batch: int, tokens: int, first_order: bool, dtype: str) -> dict:
    import torch

    return M.passes_memory(M.opt_config(size, dtype), batch, tokens, first_order, dtype=getattr(torch, dtype))


def memory_bars(shown: list, records: dict, labels: dict, view: str) -> tuple[list[dict], list[str]]:
    """One bar per shown run that has a memory breakdown: measured, or extrapolated to ``view``."""
    bars, notes = [], []
    for run in shown:
        recs = records[run.name]
        mem = next((r["memory"] for r in reversed(recs) if isinstance(r.get("memory"), dict)), None)
        if mem is None:
            continue
        opt = run.config.get("optimizer", "?")
        if view == MEMORY_VIEWS[0]:
            bars.append({"label": labels[run.name], "memory": mem})
            continue
        if run.config.get("peft", "none") != "none":
            notes.append(f"{labels[run.name]}: not extrapolated (the formula is for fine-tuning all weights).")
            continue
        try:
            source = _source_facts(str(run.config.get("model") or BUNDLED_MODEL))
            passes = _passes(view, int(mem["batch_size"]), int(mem["batch_tokens"]), opt in ("adam", "adamw"),
                             str(run.config.get("dtype", "float32")))
            chunk = int((run.config.get("hyper") or {}).get("chunk_size", 2**20))
            bars.append({"label": labels[run.name], "memory": M.extrapolate(mem, opt, source, passes, chunk)})
        except (KeyError, ValueError, OSError, TypeError) as exc:
            notes.append(f"{labels[run.name]}: cannot extrapolate ({exc}).")
    return bars, notes


def default_shown(all_runs: list) -> list[str]:
    """What a fresh session shows: this session's runs, else the running, stopped and failed ones and the
    last finished ones, newest first (a stopped run is still there after a reload)."""
    names = [r.name for r in all_runs]
    mine = [n for n in st.session_state.get("llm:mine", []) if n in names]
    if mine:
        return mine[-6:]
    open_ = [r.name for r in all_runs if r.status in ("running", "stopped", "failed")]
    return (open_ or names)[:4]


def run_row(run, label: str, records: list[dict], skipped: int, free: int) -> None:
    """One compact row per run: name, status (or starting…), progress, counters, Stop / Resume."""
    c = counters(run, records)
    with st.container(border=True):
        head, bar, buttons = st.columns([5, 4, 2], vertical_alignment="center")
        status = "starting… (loading the model, the first step)" if run.starting else run.status
        if run.starting and run.resumed_at is not None and records:
            status = f"resuming from step {c['step']}… (replaying the checkpoint)"
        head.markdown(f"**{plain(label)}**  \n{plain(status)} · {plain(run.name)}")
        if run.starting:
            bar.progress(0.0, text="starting…")
        else:
            bar.progress(c["progress"], text=f"step {c['step']:,} / {run.steps:,} · ETA {fmt_eta(c['eta_s'])}")
        token = st.session_state.get("llm:tokens", {}).get(str(run.path))
        if run.status == "running" and token:
            if buttons.button("Stop", key=f"llm:stop:{run.name}", width="stretch"):
                try:
                    R.stop_run(run.path, token)
                    st.toast(f"Asked {label} to stop; it saves a checkpoint first.")
                except ValueError as exc:
                    say(run.name, str(exc))
        elif run.status == "running":
            buttons.caption("started by another session")
        elif run.resumable:
            if buttons.button("Resume", key=f"llm:resume:{run.name}", width="stretch", disabled=free <= 0,
                              help="Continue from its checkpoint (the records are those of an uninterrupted run)"
                                   if free > 0 else "No run slot is free: stop a run or wait for one to finish"):
                try:
                    _keep(R.resume_run(run.path, runs_dir=runs_dir()))
                    st.toast(f"Resuming {label}.")
                except ValueError as exc:
                    say(run.name, str(exc))
        show_messages(run.name)
        if not run.starting:
            acc = "—" if c["eval_accuracy"] is None else f"{c['eval_accuracy']:.3f}"
            test = f" · test accuracy {c['test_accuracy']:.3f}" if c["test_accuracy"] is not None else ""
            st.caption(f"{c['forward_passes']:,} forward passes · {c['steps_per_s']:.1f} steps/s · dev accuracy {acc}"
                       f"{test} · tensors' peak {F.human_bytes(c['tensor_peak_bytes'])} · optimizer state "
                       f"{F.human_bytes(c['optimizer_state_bytes'])} · process peak (RSS) "
                       f"{F.human_bytes(c['peak_memory_bytes'])}")
        if run.status == "failed":
            st.error(plain(f"{label} failed: {run.reason}"))
        elif run.status == "stopped":
            st.caption(plain(f"Stopped: {run.reason}."))
        if skipped:
            st.caption(f"{skipped} unreadable line(s) of its metrics.jsonl were skipped.")


def start_row(values: dict) -> int:
    """▶ Start runs, + Adam reference and the free run slots (in the fragment: a stop frees a slot live);
    returns the free slots."""
    family, limit = R.device_slot(values["device"])
    where = "on the CPU" if family == "cpu" else "on this CUDA device"
    busy = R.slots_in_use(runs_dir(), family, limit)
    free = limit - busy
    n = max(1, int(values.get("processes", 1)))  # slots a run takes (one per process)
    top = st.columns([2, 2.4, 3.6], vertical_alignment="center")
    started = top[0].button("▶ Start runs", type="primary", disabled=not values["opts"] or free <= 0,
                            key="llm:start", width="stretch")
    reference = top[1].button("+ Adam reference", key="llm:adam", disabled=free <= 0, width="stretch",
                              help="Start a first-order Adam run with the same task, steps and seed: the upper "
                                   "reference line on the charts")
    if free <= 0:
        top[2].caption(f"{busy} runs are running {where} (the limit is {limit} at a time): stop one or wait.")
    elif n > 1 and len(values["opts"]) * n > free:
        top[2].caption(f"A run of {n} processes takes {n} of the {free} free run slots {where}: "
                       f"{free // n} run(s) can start now.")
    elif len(values["opts"]) > free:
        top[2].caption(f"Only {free} more run(s) can start {where} now; the first {free} chosen will start.")
    else:
        top[2].caption(f"{free} of {limit} run slots free {where}.")
    for pressed, names in ((started, None), (reference, ["adam"])):
        if pressed:
            problems = start_runs(values, names)
            if problems:
                say("start", " ".join(problems))
            st.session_state.pop("llm:show", None)
            free = limit - R.slots_in_use(runs_dir(), family, limit)
    show_messages("start")
    return free


def view_row(values: dict) -> None:
    """The charts' x axis and the loss smoothing (in the fragment: changing them redraws only the charts)."""
    views = st.columns([3, 2], vertical_alignment="bottom")
    values["x"] = views[0].segmented_control(
        "x axis", list(LF.X_AXES), key=state.ensure(PAGE, BY_KEY["x"]), selection_mode="single",
        format_func=lambda k: LF.X_AXES[k].replace("training time (s)", "time (s)")) or BY_KEY["x"].default
    values["smooth"] = views[1].slider("loss smoothing", 0.0, 0.99, key=state.ensure(PAGE, BY_KEY["smooth"]),
                                       step=0.01, help="EMA of the training loss; the raw points stay faint "
                                                       "behind (0: raw)")


@st.fragment(run_every=REFRESH_S)
def live(values: dict) -> None:
    """The runs, refreshed every couple of seconds while this page is open."""
    free = start_row(values)
    all_runs = R.list_runs(runs_dir())
    if not all_runs:
        st.caption(f"No runs yet in {runs_dir()}. Start some with the button above.")
        return
    view_row(values)
    state.save(PAGE, url_fields(FIELDS, values), values)
    labels = labels_for(all_runs)
    names = [r.name for r in all_runs]
    key = "llm:show"
    if key in st.session_state:
        st.session_state[key] = [n for n in st.session_state[key] if n in names]
    else:
        st.session_state[key] = default_shown(all_runs)
    running = [r for r in all_runs if r.status == "running"]
    shown = [r for r in all_runs if r.name in st.session_state[key]]
    records, skipped, series = {}, {}, []
    for i, run in enumerate(shown):
        records[run.name], skipped[run.name] = records_of(run)
        opt = run.config.get("optimizer", "?")
        if records[run.name]:
            first = opt in ("adam", "adamw")
            label = labels[run.name].replace(" (first order)", "") + (" · first-order reference" if first else "")
            series.append({"label": label, "optimizer": opt,
                           "colour": F.colour_for(opt, i), "records": records[run.name], "reference": first})
    x, smooth = values["x"], float(values["smooth"])
    if series:
        c1, c2 = st.columns(2)
        with c1:
            chart.plotly_chart(LF.race_figure(series, "train_loss", x=x, smoothing=smooth, height=300,
                                              title=f"Training loss against {LF.X_AXES[x]}", revision=f"loss:{x}"),
                               key="llm:loss")
        with c2:
            chart.plotly_chart(LF.race_figure(series, "eval_accuracy", x=x, height=300,
                                              title=f"Dev accuracy against {LF.X_AXES[x]}", revision=f"acc:{x}"),
                               key="llm:acc")
    ahead = LF.leader_text(LF.leader(series))
    if ahead:
        st.info(ahead)
    elif len(series) >= 2:
        st.caption("Who is ahead shows after every run's first evaluation.")
    if any(Path(str(r.config.get("data", ""))).name == "graded" for r in shown):
        st.caption(RACE_NOTE)
    if x == "forward_passes" and any(s["reference"] for s in series):
        st.caption("First-order Adam (dashed) takes one forward and one backward pass a step (a backward costs "
                   "about two forward passes): its x counts the forward passes only.")
    st.multiselect("Runs to show", names, key=key, format_func=lambda n: labels.get(n, n),
                   help="Every run in the runs folder, newest first; running ones keep going when you close the "
                        "tab, stopped ones can be resumed.")
    st.caption(f"{len(running)} running · {len(all_runs)} runs in {runs_dir()} · refreshed every {REFRESH_S:g} s")
    for run in shown:
        run_row(run, labels[run.name], records[run.name], skipped[run.name], free)
    memory_section(shown, records, labels, values)


def memory_section(shown: list, records: dict, labels: dict, values: dict) -> None:
    if not any(isinstance(r.get("memory"), dict) for run in shown for r in records[run.name][-1:]):
        return
    st.subheader("Memory by category")
    view = st.segmented_control("memory of", MEMORY_VIEWS, key=state.ensure(PAGE, BY_KEY["mem"]),
                                selection_mode="single", format_func=lambda v: v.replace(" (measured)", ""),
                                help="The bundled model as measured, or the same steps extrapolated to OPT sizes"
                                ) or MEMORY_VIEWS[0]
    values["mem"] = view
    state.save(PAGE, url_fields(FIELDS, values), values)
    bars, notes = memory_bars(shown, records, labels, view)
    if not bars:
        return
    if view == MEMORY_VIEWS[0]:
        st.caption("Measured from the tensors of the runs' last measured step (step 2, then every evaluation): "
                   "each category's largest size in the step; the diamond is the peak of all tensors at once. "
                   "The process's resident set (RSS, in the rows above) also holds the Python/torch runtime, "
                   "about 420 MB. On this 0.94 M-parameter model a direction block is a third of the weights; "
                   "from OPT-125m on it is 4 MB against gigabytes.")
        unit = "MB"
    else:
        st.caption(f"The same steps extrapolated to {view} from the model configuration, at the runs' batch shape "
                   "(float32, one block worker as on CUDA).")
        with st.expander("How"):
            st.markdown(plain(M.EXTRAPOLATION_FORMULA))
        unit = "GB"
    chart.plotly_chart(LF.memory_figure(bars, unit=unit, height=110 + 40 * len(bars), revision=f"mem:{view}"),
                       key="llm:memory")
    base = next((b for b in bars if b["label"].startswith("MeZO ·")), None)
    ratios = " · ".join(f"{b['label'].split(' · ')[0]} {b['memory']['peak_total'] / base['memory']['peak_total']:.2f}×"
                        for b in bars if base is not None and b is not base)
    if ratios:
        st.caption(f"Peak of all tensors, relative to MeZO: {ratios}")
    for note in notes:
        st.caption(plain(note))


st.title("LLM fine-tune")
if IMPORT_ERROR is not None:
    st.error(plain(f"The LLM demo could not be loaded ({IMPORT_ERROR}); the other pages still work."))
    st.stop()

FIELDS = fields()
BY_KEY = {f.key: f for f in FIELDS}
errors = state.load(PAGE, FIELDS)
st.caption("Optimizers race to fine-tune a small language model with forward passes only; first-order Adam is "
           "the reference. Runs go on in the background.")
for e in errors:
    st.warning(plain(e))

with st.sidebar:
    st.header("New runs")
    values: dict = {}
    values["opts"] = st.multiselect("Optimizers", NAMES, key=state.ensure(PAGE, BY_KEY["opts"]),
                                    format_func=lambda n: OPTIMIZERS[n].title)
    values["task"] = st.selectbox("task", list(BUNDLED_TASKS), key=state.ensure(PAGE, BY_KEY["task"]),
                                  format_func=lambda t: TASK_TITLES.get(t, t))
    c1, c2 = st.columns(2)
    values["steps"] = c1.number_input("steps", 1, 100_000, key=state.ensure(PAGE, BY_KEY["steps"]), step=50)
    values["seed"] = c2.number_input("seed", 0, 10**6, key=state.ensure(PAGE, BY_KEY["seed"]), step=1)
    c1, c2 = st.columns(2)
    values["batch"] = c1.number_input("batch size", 1, 512, key=state.ensure(PAGE, BY_KEY["batch"]), step=1)
    values["eval_every"] = c2.number_input("evaluate every", 1, 100_000, key=state.ensure(PAGE, BY_KEY["eval_every"]),
                                           step=5)
    values["device"] = st.radio("device", ["auto", "cpu", "cuda"], key=state.ensure(PAGE, BY_KEY["device"]),
                                horizontal=True)
    values["processes"] = st.number_input("processes", 1, 64, key=state.ensure(PAGE, BY_KEY["processes"]), step=1,
                                          help=BY_KEY["processes"].help + ". One training split over N processes "
                                               "(torchrun); the batch size must be a multiple of N.")
    values["lora"] = st.number_input("LoRA rank (0: all weights)", 0, LORA_MAX_RANK,
                                     key=state.ensure(PAGE, BY_KEY["lora"]), step=4,
                                     help="Fine-tune only LoRA adapters of this rank on q_proj and v_proj (through "
                                          "peft); 0 fine-tunes all weights. " + LORA_NOTE)
    values["model"] = st.text_input("model folder", key=state.ensure(PAGE, BY_KEY["model"]),
                                    placeholder=f"bundled: {Path(BUNDLED_MODEL).name}")
    values["data"] = st.text_input("task path (folder or JSONL)", key=state.ensure(PAGE, BY_KEY["data"]),
                                   placeholder="empty: the bundled task above")
    for n in values["opts"]:
        with st.expander(OPTIMIZERS[n].title):
            for k, v in controls.optimizer_controls(PAGE, n, base=llm_defaults(n)).items():
                values[f"{n}.{k}"] = v
for f in FIELDS:
    values.setdefault(f.key, state.value(PAGE, f))
state.save(PAGE, url_fields(FIELDS, values), values)

live(values)
