"""Figures and summaries of the LLM page: pure functions of run records (no Streamlit), so they are tested
without a browser. The 2-D pages' builders live in ``app/figures.py``; this module only borrows its colours.

A series is ``{"label": str, "optimizer": str, "colour": str, "records": [record, ...], "reference": bool}``
(``reference``: a first-order run drawn as the upper reference line).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go

X_AXES = {"forward_passes": "forward passes", "step": "steps", "wall_time_s": "training time (s)"}
"""What the page's charts can have on the x axis (record field -> axis title)."""

MEMORY_COLOURS = {
    "weights": "#4c78a8", "gradients": "#f58518", "optimizer_state": "#e45756", "activations_saved": "#72b7b2",
    "forward_working": "#b8c4d6", "backward_working": "#9d755d", "optimizer_temporaries": "#54a24b",
}


def ema(values: Sequence[float], weight: float) -> list[float]:
    """Exponential moving average with bias correction (as TensorBoard's smoothing): ``weight`` in [0, 1),
    0 gives the values back. Non-finite values are carried through without entering the average."""
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"smoothing must be in [0, 1), got {weight!r}")
    out, acc, norm = [], 0.0, 0.0
    for v in values:
        if not math.isfinite(v):
            out.append(v)
            continue
        acc = weight * acc + (1.0 - weight) * v
        norm = weight * norm + (1.0 - weight)
        out.append(acc / norm)
    return out


def _points(records: Sequence[Mapping], x: str, y: str) -> tuple[list, list]:
    xs, ys = [], []
    for r in records:
        if r.get(y) is not None and r.get(x) is not None:
            xs.append(r[x])
            ys.append(r[y])
    return xs, ys


def race_figure(series: Sequence[Mapping], y: str, *, x: str = "forward_passes", smoothing: float = 0.0,
                title: str = "", height: int = 330, revision: str = "") -> go.Figure:
    """Lines of ``y`` against ``x`` for several runs, legend below the plot.

    ``smoothing`` > 0 draws an EMA of each run's values over its raw points, which stay faint behind.
    First-order reference runs are dashed. ``layout.uirevision`` is ``revision``: Plotly keeps the user's
    zoom across updates while it does not change (the page changes it with the axis or the metric).
    """
    if x not in X_AXES:
        raise ValueError(f"unknown x axis {x!r}; allowed: {', '.join(X_AXES)}")
    fig = go.Figure()
    evaluation = y.startswith("eval")
    for s in series:
        xs, ys = _points(s["records"], x, y)
        dash = "dash" if s.get("reference") else "solid"
        if smoothing > 0 and not evaluation:
            fig.add_trace(go.Scattergl(x=xs, y=ys, mode="lines", name=s["label"], legendgroup=s["label"],
                                       showlegend=False, hoverinfo="skip", opacity=0.22,
                                       line=dict(color=s["colour"], width=1)))
            ys = ema(ys, smoothing)
        fig.add_trace(go.Scattergl(x=xs, y=ys, mode="lines+markers" if evaluation else "lines", name=s["label"],
                                   legendgroup=s["label"], line=dict(color=s["colour"], width=2.2, dash=dash),
                                   marker=dict(size=5)))
    # The x axis is named in the title (an axis title would collide with the legend below the plot).
    fig.update_xaxes(title_text=None)
    fig.update_yaxes(title_text=None)
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=34 if title else 10, b=10),
                      title=dict(text=title, x=0.01, font=dict(size=14)) if title else None,
                      legend=dict(orientation="h", yanchor="top", y=-0.12, x=0, xanchor="left", traceorder="normal"),
                      uirevision=revision or f"{y}:{x}")
    return fig


# ------------------------------------------------------------------------------------- who is ahead
def _eval_at(records: Sequence[Mapping], passes: int) -> Mapping | None:
    """The last evaluation record at or before ``passes`` forward passes."""
    best = None
    for r in records:
        if r.get("eval_loss") is not None and r.get("forward_passes") is not None and r["forward_passes"] <= passes:
            best = r
    return best


def _first_reach(records: Sequence[Mapping], loss: float) -> int | None:
    for r in records:
        if r.get("eval_loss") is not None and r["eval_loss"] <= loss:
            return int(r["forward_passes"])
    return None


def leader(series: Sequence[Mapping]) -> dict[str, Any] | None:
    """Which of the shown zeroth-order runs is ahead, from their evaluations at the same forward passes.

    Compares every non-reference run at the largest forward-pass count all of them have evaluated at (at
    least one evaluation after the zero-shot one): dev loss (lower is ahead) and dev accuracy. Also how many
    forward passes the leader needed to reach the runner-up's dev loss there. None if fewer than two runs
    have such an evaluation.
    """
    runs = [s for s in series if not s.get("reference")]
    ends = []
    for s in runs:
        evals = [r for r in s["records"] if r.get("eval_loss") is not None and r.get("forward_passes", 0) > 0]
        if evals:
            ends.append(evals[-1]["forward_passes"])
    if len(ends) < 2 or len(ends) < len(runs):
        return None
    passes = min(ends)
    at = [(s, _eval_at(s["records"], passes)) for s in runs]
    at.sort(key=lambda p: p[1]["eval_loss"])
    (first, a), (second, b) = at[0], at[1]
    reach = _first_reach(first["records"], b["eval_loss"])
    return {"passes": passes, "leader": first["label"], "runner_up": second["label"],
            "leader_loss": a["eval_loss"], "runner_up_loss": b["eval_loss"],
            "leader_accuracy": a.get("eval_accuracy"), "runner_up_accuracy": b.get("eval_accuracy"),
            "leader_passes_to_runner_up": reach, "ranking": [s["label"] for s, _ in at]}


def leader_text(result: Mapping[str, Any] | None) -> str | None:
    """The page's sentence for :func:`leader` (Markdown), or None."""
    if result is None:
        return None
    acc = ""
    if result["leader_accuracy"] is not None and result["runner_up_accuracy"] is not None:
        diff = 100 * (result["leader_accuracy"] - result["runner_up_accuracy"])
        acc = (f", dev accuracy {100 * result['leader_accuracy']:.1f} % vs {100 * result['runner_up_accuracy']:.1f} %"
               f" ({diff:+.1f} points)")
    text = (f"**{result['leader']}** leads **{result['runner_up']}** at {result['passes']:,} forward passes: "
            f"dev loss {result['leader_loss']:.3f} vs {result['runner_up_loss']:.3f}{acc}.")
    reach = result["leader_passes_to_runner_up"]
    if abs(result["leader_loss"] - result["runner_up_loss"]) < 0.01 * result["runner_up_loss"]:
        text += " Under 1 % apart: a tie so far."
    elif reach is not None and reach < result["passes"]:
        short = result["runner_up"].split(" · ")[0]
        text += f" It reached {short}'s dev loss in {reach / result['passes']:.2f} × the passes."
    return text


# ------------------------------------------------------------------------------------- memory
def memory_figure(bars: Sequence[Mapping[str, Any]], *, title: str = "", height: int = 300,
                  unit: str = "MB", revision: str = "memory") -> go.Figure:
    """Horizontal stacked bars of memory by category, one bar per run or optimizer.

    ``bars`` items: ``{"label", "memory": {category: bytes, ..., "peak_total": bytes}}``. The categories are
    stacked in :data:`llm_demo.memory.CATEGORIES` order; a black diamond marks the measured (or predicted)
    peak of all tensors at once, which is at most the stack (the categories' maxima are not all reached at
    the same moment).
    """
    from llm_demo.memory import CATEGORIES, LABELS

    scale = {"KB": 1e3, "MB": 1e6, "GB": 1e9}[unit]  # decimal units, as everywhere in the app
    labels = [b["label"] for b in bars]
    fig = go.Figure()
    height += 18 * sum(1 for cat in CATEGORIES if any(b["memory"].get(cat, 0) for b in bars)) // 2  # the legend
    for cat in CATEGORIES:
        values = [b["memory"].get(cat, 0) / scale for b in bars]
        if not any(values):
            continue
        fig.add_trace(go.Bar(y=labels, x=values, name=LABELS[cat], orientation="h",
                             marker=dict(color=MEMORY_COLOURS[cat]),
                             hovertemplate=f"{LABELS[cat]}: %{{x:,.3g}} {unit}<extra>%{{y}}</extra>"))
    fig.add_trace(go.Scatter(y=labels, x=[b["memory"].get("peak_total", 0) / scale for b in bars], mode="markers",
                             name="peak of all tensors at once", marker=dict(symbol="diamond", size=10, color="black"),
                             hovertemplate=f"peak: %{{x:,.4g}} {unit}<extra>%{{y}}</extra>"))
    fig.update_layout(barmode="stack", height=height, margin=dict(l=10, r=10, t=34 if title else 10, b=10),
                      title=dict(text=title, x=0.01, font=dict(size=14)) if title else None,
                      legend=dict(orientation="h", yanchor="top", y=-0.12, x=0, xanchor="left", traceorder="normal",
                                  entrywidth=0.5, entrywidthmode="fraction"),
                      uirevision=revision)
    fig.update_xaxes(title_text=None, ticksuffix=f" {unit}")
    fig.update_yaxes(autorange="reversed")
    return fig


def flat_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """A record with its nested ``memory`` breakdown as ``memory.<category>`` columns."""
    out = {k: v for k, v in record.items() if not isinstance(v, Mapping)}
    for key, value in record.items():
        if isinstance(value, Mapping):
            out |= {f"{key}.{k}": v for k, v in value.items()}
    return out


def records_csv(records: Sequence[Mapping[str, Any]]) -> str:
    """LLM run records as CSV, one row a record, the memory breakdown flattened into columns."""
    rows = [flat_record(r) for r in records]
    columns = sorted({k for r in rows for k in r})
    buf = io.StringIO()
    out = csv.DictWriter(buf, columns, lineterminator="\n")
    out.writeheader()
    out.writerows(rows)
    return buf.getvalue()
