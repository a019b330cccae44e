"""Pure figure builders: plain data in, a Plotly ``go.Figure`` (or matplotlib figure / bytes) out.

No Streamlit and no optimizer math here; the pages compute through ``landscapes``/``optimizers`` and
hand the results to these functions, which the tests call directly.

Animation design (the Plotly trap): a frame's ``data`` replaces traces *by position*; without
``traces=[...]`` the first frame trace overwrites trace 0, which is the contour. And even with the
indices right, an animation with ``redraw: False`` replots every subplot that holds an animated trace,
and plotly.js erases contour and heatmap traces during the animation (seen in a real browser with
plotly.js 4, even with ``traces`` set). So every frame carries only the moving heads and their
trailing segments, by index, and
the landscape is not a trace at all but a background image in data coordinates (a layout image is
never touched by frames), under a colour-bar-only trace: the landscape, the minima and the full faint
paths are drawn once and survive play (checked in a real browser). Frames are subsampled (at most
``max_frames``) so the figure's JSON stays small.
"""

from __future__ import annotations

import csv
import io
import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

#: Optimizer colours, indexed by each registry entry's ``colour_slot`` (so every figure agrees).
PALETTE = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
EXTRA_COLOURS = ["#e377c2", "#17becf", "#bcbd22", "#7f7f7f", "#393b79", "#637939", "#8c6d31", "#843c39"]
MAX_FRAMES = 100
CONTOUR_SCALE = "Viridis"


def colour_for(name: str, index: int = 0) -> str:
    """A fixed colour per optimizer (its registry entry's colour slot in :data:`PALETTE`), else one from
    a cycle."""
    from optimizers import OPTIMIZERS

    entry = OPTIMIZERS.get(name)
    if entry is None:
        return EXTRA_COLOURS[index % len(EXTRA_COLOURS)]
    return PALETTE[entry.colour_slot % len(PALETTE)]


DASHES = ("solid", "dash", "dot", "dashdot")


def optimizer_dashes(names: Sequence[str]) -> dict[str, str]:
    """A line style per optimizer, for figures where colour already encodes something else."""
    return {n: DASHES[i % len(DASHES)] for i, n in enumerate(names)}


def sweep_colours(count: int) -> list[str]:
    """``count`` colours along a sequential scale, for the values of one swept hyperparameter."""
    from plotly.colors import sample_colorscale

    if count <= 1:
        return ["#1f77b4"]
    return sample_colorscale("Plasma", [0.05 + 0.8 * i / (count - 1) for i in range(count)])


# --------------------------------------------------------------------------------- data records
@dataclass
class Surface:
    """A landscape on a grid: ``Z[i, j] = f(xs[j], ys[i])``; ``C`` the values to colour by."""

    xs: np.ndarray
    ys: np.ndarray
    Z: np.ndarray
    C: np.ndarray
    log: bool
    title: str = ""
    minima: Sequence[tuple[float, float, float]] = ()
    start: tuple[float, float] | None = None

    @property
    def domain(self) -> tuple[tuple[float, float], tuple[float, float]]:
        return (float(self.xs[0]), float(self.xs[-1])), (float(self.ys[0]), float(self.ys[-1]))


@dataclass
class Path:
    """One run to draw: positions ``xy [n, 2]``, losses, cumulative forward passes, divergence step."""

    label: str
    colour: str
    xy: np.ndarray
    loss: np.ndarray
    forward_passes: np.ndarray
    diverged_at: int | None = None
    # Optional per-step spread over repeats (same length as loss): median, lower and upper quantile.
    median: np.ndarray | None = None
    lower: np.ndarray | None = None
    upper: np.ndarray | None = None
    extra: dict = field(default_factory=dict)
    dash: str = "solid"

    @property
    def steps(self) -> int:
        return len(self.loss) - 1


def frame_steps(max_steps: int, max_frames: int = MAX_FRAMES) -> list[int]:
    """Step indices to animate: 0 … ``max_steps`` evenly, at most ``max_frames``, the last included."""
    if max_steps <= 0:
        return [0]
    count = min(max_frames, max_steps + 1)
    return sorted({int(round(v)) for v in np.linspace(0, max_steps, count)})


def _display_xy(xy: np.ndarray, domain) -> np.ndarray:
    """Positions clipped to a generous box around the domain (a run that escaped to 1e30 would make
    the JSON and the renderer struggle; beyond 10 domain widths nothing is visible anyway)."""
    (x0, x1), (y0, y1) = domain
    wx, wy = x1 - x0, y1 - y0
    out = np.asarray(xy, dtype=np.float64).copy()
    out[:, 0] = np.clip(out[:, 0], x0 - 10 * wx, x1 + 10 * wx)
    out[:, 1] = np.clip(out[:, 1], y0 - 10 * wy, y1 + 10 * wy)
    return out


def escaped_at(xy: np.ndarray, domain, margin: float = 0.5) -> int | None:
    """The first step at which a path leaves the domain widened by ``margin`` of its size, or None."""
    (x0, x1), (y0, y1) = domain
    wx, wy = (x1 - x0) * margin, (y1 - y0) * margin
    xy = np.asarray(xy)
    outside = (xy[:, 0] < x0 - wx) | (xy[:, 0] > x1 + wx) | (xy[:, 1] < y0 - wy) | (xy[:, 1] > y1 + wy)
    hits = np.flatnonzero(outside)
    return int(hits[0]) if hits.size else None


def _round(a: np.ndarray, digits: int = 5) -> np.ndarray:
    """Values rounded to ``digits`` significant digits (smaller JSON, no visible change)."""
    a = np.asarray(a, dtype=np.float64)
    with np.errstate(all="ignore"):
        mag = np.where(np.isfinite(a) & (a != 0), np.floor(np.log10(np.abs(np.where(a == 0, 1, a)))), 0)
        scale = 10.0 ** (digits - 1 - mag)
        out = np.where(np.isfinite(a), np.round(a * scale) / scale, a)
    return out


def _contour_trace(surface: Surface, showscale: bool = True, **kw) -> go.Contour:
    label = "log10(f − f_min)" if surface.log else "f"
    return go.Contour(
        x=_round(surface.xs), y=_round(surface.ys), z=_round(surface.C).astype(np.float32),
        colorscale=CONTOUR_SCALE, ncontours=30, opacity=0.85, showscale=showscale,
        contours=dict(coloring="heatmap", showlines=True), line=dict(width=0.5, color="rgba(255,255,255,0.35)"),
        colorbar=dict(title=dict(text=label, side="right"), thickness=12) if showscale else None,
        hovertemplate="x=%{x:.3f}<br>y=%{y:.3f}<br>" + label + "=%{z:.3g}<extra></extra>",
        name="landscape", showlegend=False, **kw,
    )


def _colourbar_trace(surface: Surface) -> go.Scatter:
    """A scatter trace with no visible points that shows the colour bar of the background image."""
    C = surface.C[np.isfinite(surface.C)]
    lo, hi = (float(C.min()), float(C.max())) if C.size else (0.0, 1.0)
    label = "log10(f − f_min)" if surface.log else "f"
    return go.Scatter(x=[None], y=[None], mode="markers", name="landscape", showlegend=False, hoverinfo="skip",
                      marker=dict(color=[lo, hi], cmin=lo, cmax=hi, colorscale=CONTOUR_SCALE, showscale=True,
                                  colorbar=dict(title=dict(text=label, side="right"), thickness=12)))


def contour_image(surface: Surface, pixels: int = 520) -> str:
    """Filled contours with thin lines as a PNG data URI (matplotlib), for a Plotly background image."""
    import base64

    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    (x0, x1), (y0, y1) = surface.domain
    aspect = (y1 - y0) / (x1 - x0)
    width = max(2, pixels if aspect <= 1 else int(round(pixels / aspect)))
    height = max(2, int(round(width * aspect)))  # an elongated domain still gives a drawable image
    fig = Figure(figsize=(width / 100, height / 100), dpi=100)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    C = np.ma.masked_invalid(surface.C)
    if C.count():
        ax.contourf(surface.xs, surface.ys, C, levels=30, cmap=CONTOUR_SCALE.lower())
        ax.contour(surface.xs, surface.ys, C, levels=30, colors="white", linewidths=0.4, alpha=0.35)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _minima_trace(surface: Surface, **kw) -> go.Scatter:
    mx = [m[0] for m in surface.minima]
    my = [m[1] for m in surface.minima]
    return go.Scatter(x=mx, y=my, mode="markers", name="minimum", showlegend=False,
                      marker=dict(symbol="star", size=13, color="white", line=dict(color="black", width=1)),
                      hovertemplate="minimum (%{x:.3f}, %{y:.3f})<extra></extra>", **kw)


def _head_at(path: Path, clock: int, align: str = "step") -> int:
    """Index of the head at ``clock``: a step number, or (``align="forward_passes"``) a number of
    forward passes, so that runs with different costs per step move in step with their cost."""
    if align == "forward_passes":
        return max(0, int(np.searchsorted(np.asarray(path.forward_passes), clock, side="right")) - 1)
    return min(clock, len(path.loss) - 1)


def _clock_end(paths: Sequence[Path], align: str) -> int:
    if align == "forward_passes":
        return max((int(p.forward_passes[-1]) for p in paths), default=0)
    return max((p.steps for p in paths), default=0)


# --------------------------------------------------------------------------------- contour animation
def contour_animation(
    surface: Surface,
    paths: Sequence[Path],
    *,
    max_frames: int = MAX_FRAMES,
    trail: int = 12,
    frame_ms: int = 60,
    height: int = 560,
    align: str = "step",
    image: str | None = None,
) -> go.Figure:
    """Contour of the landscape with every path, animated heads, play/pause buttons and a step slider.

    The landscape is a background image (``layout.images[0]``, filled contours drawn by matplotlib)
    and trace 0 only carries its colour bar. Trace layout: 0 colour bar, 1 minima, 2 start, then per
    path a faint full path, then a divergence marker trace (empty if none diverged), and last the
    animated traces: per path a head and a trailing segment. Frames carry only those last traces, by
    index. Frames are named by step, or by forward passes with ``align="forward_passes"`` (fair
    budgets). ``image`` is the background from :func:`contour_image` (pass a cached one; made here if
    omitted). The figure is :func:`contour_animation_dict` validated by Plotly.
    """
    return go.Figure(contour_animation_dict(surface, paths, max_frames=max_frames, trail=trail, frame_ms=frame_ms,
                                            height=height, align=align, image=image))


def contour_animation_dict(
    surface: Surface,
    paths: Sequence[Path],
    *,
    max_frames: int = MAX_FRAMES,
    trail: int = 12,
    frame_ms: int = 60,
    height: int = 560,
    align: str = "step",
    image: str | None = None,
) -> dict:
    """:func:`contour_animation` as a plain figure dict, built without Plotly's objects (their
    validation was ~0.1 s of every Playground re-render with 60 frames; the app sends this dict, the
    tests check that Plotly accepts it)."""
    domain = surface.domain
    (x0, x1), (y0, y1) = domain
    data = [_colourbar_trace(surface).to_plotly_json(), _minima_trace(surface).to_plotly_json()]
    sx, sy = surface.start if surface.start is not None else (
        (paths[0].xy[0] if paths else (math.nan, math.nan)))
    data.append(dict(type="scatter", x=[float(sx)], y=[float(sy)], mode="markers", name="start", showlegend=False,
                     marker=dict(symbol="circle-open", size=14, color="white", line=dict(width=3)),
                     hovertemplate="start (%{x:.3f}, %{y:.3f})<extra></extra>"))
    shown = [_display_xy(p.xy, domain) for p in paths]
    for p, xy in zip(paths, shown):
        data.append(dict(
            type="scatter", x=_round(xy[:, 0]), y=_round(xy[:, 1]), mode="lines", name=p.label,
            legendgroup=p.label, line=dict(color=p.colour, width=1.5), opacity=0.55,
            hovertemplate=p.label + " step %{customdata}<br>(%{x:.3f}, %{y:.3f})<extra></extra>",
            customdata=np.arange(len(xy)),
        ))
    ends_x, ends_y, ends_text = [], [], []
    for p, xy in zip(paths, shown):
        if p.diverged_at is not None:
            ends_x.append(float(xy[-1, 0]))
            ends_y.append(float(xy[-1, 1]))
            ends_text.append(f"{p.label} diverged at step {p.diverged_at}")
    data.append(dict(type="scatter", x=ends_x, y=ends_y, mode="markers+text", name="diverged", showlegend=False,
                     text=["diverged"] * len(ends_x), textposition="top center",
                     textfont=dict(color="white"), hovertext=ends_text, hoverinfo="text",
                     marker=dict(symbol="x-thin", size=18, line=dict(width=4, color="#ff2020"))))
    first_animated = len(data)
    steps = frame_steps(_clock_end(paths, align), max_frames)
    last = steps[-1]

    def animated(step: int) -> list[dict]:
        out = []
        for p, xy in zip(paths, shown):
            i = _head_at(p, step, align)
            j = max(0, i - trail)
            out.append({"type": "scatter", "x": [float(xy[i, 0])], "y": [float(xy[i, 1])]})
            out.append({"type": "scatter", "x": np.round(xy[j:i + 1, 0], 5).tolist(),
                        "y": np.round(xy[j:i + 1, 1], 5).tolist()})
        return out

    for p, (head, seg) in zip(paths, zip(*[iter(animated(last))] * 2)):
        data.append(dict(head, mode="markers", name=p.label + " (now)", legendgroup=p.label, showlegend=False,
                         marker=dict(size=12, color=p.colour, line=dict(color="white", width=2)), hoverinfo="skip"))
        data.append(dict(seg, mode="lines", legendgroup=p.label, showlegend=False,
                         line=dict(color=p.colour, width=4), hoverinfo="skip", name=p.label + " (trail)"))
    indices = list(range(first_animated, len(data)))
    frames = [{"name": str(s), "data": animated(s), "traces": indices} for s in steps]
    layout = dict(
        images=[dict(source=image or contour_image(surface), xref="x", yref="y", x=x0, y=y1, sizex=x1 - x0,
                     sizey=y1 - y0, sizing="stretch", layer="below", opacity=1.0, name="landscape")],
        xaxis=dict(range=[x0, x1], title=dict(text="x"), constrain="domain", showgrid=False, zeroline=False),
        yaxis=dict(range=[y0, y1], title=dict(text="y"), scaleanchor="x", scaleratio=1, constrain="domain",
                   showgrid=False, zeroline=False),
        height=height, margin=dict(l=10, r=10, t=40, b=90), title=dict(text=surface.title, x=0.01),
        legend=dict(orientation="h", yanchor="bottom", y=1.0, x=1, xanchor="right"),
        dragmode="pan", uirevision=surface.title,
        **_player(steps, frame_ms, redraw=False, active=len(steps) - 1,
                  prefix="forward passes " if align == "forward_passes" else "step "),
    )
    return {"data": data, "layout": layout, "frames": frames}


def _player(steps: Sequence[int], frame_ms: int, *, redraw: bool, active: int, prefix: str = "step ") -> dict:
    """Layout entries of a play/pause button pair and a slider with one step per frame."""
    play_args = {"frame": {"duration": frame_ms, "redraw": redraw}, "transition": {"duration": 0},
                 "mode": "immediate", "fromcurrent": False}
    pause_args = {"frame": {"duration": 0, "redraw": False}, "transition": {"duration": 0}, "mode": "immediate"}
    return dict(
        updatemenus=[dict(
            type="buttons", direction="left", showactive=False, x=0.0, y=-0.12, xanchor="left", yanchor="top",
            pad=dict(r=8, t=8),
            buttons=[dict(label="▶ Play", method="animate", args=[None, play_args]),
                     dict(label="❚❚ Pause", method="animate", args=[[None], pause_args])],
        )],
        sliders=[dict(
            active=active, x=0.2, len=0.8, y=-0.12, yanchor="top", pad=dict(t=8),
            currentvalue=dict(prefix=prefix, visible=True),
            steps=[dict(label=str(s), method="animate",
                        args=[[str(s)], {"frame": {"duration": 0, "redraw": redraw}, "mode": "immediate",
                                         "transition": {"duration": 0}}]) for s in steps],
        )],
    )


def _add_player(fig: go.Figure, steps: Sequence[int], frame_ms: int, *, redraw: bool, active: int,
                prefix: str = "step ") -> None:
    fig.update_layout(**_player(steps, frame_ms, redraw=redraw, active=active, prefix=prefix))


# --------------------------------------------------------------------------------- 3-D surface
def surface_animation(surface: Surface, paths: Sequence[Path], *, max_frames: int = 60, frame_ms: int = 80,
                      height: int = 560, align: str = "step") -> go.Figure:
    """The same runs on a 3-D surface of the colour values (log10(f − f_min) on a log landscape).

    3-D traces only animate with ``redraw: True``; frames still carry only the heads (by index), so
    the surface and paths are kept, and there are fewer frames than on the contour.
    """
    domain = surface.domain
    (x0, x1), (y0, y1) = domain
    C = surface.C
    fig = go.Figure()
    fig.add_trace(go.Surface(x=_round(surface.xs), y=_round(surface.ys), z=_round(C).astype(np.float32),
                             colorscale=CONTOUR_SCALE, opacity=0.9, showscale=False, name="landscape",
                             hovertemplate="x=%{x:.3f}<br>y=%{y:.3f}<br>%{z:.3g}<extra></extra>"))
    finite = C[np.isfinite(C)]
    zlo, zhi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)

    def height_of(xy: np.ndarray, loss: np.ndarray) -> np.ndarray:
        # Colour-scale value of each point, computed the way the grid was (log of the gap, or f).
        if surface.log:
            lowest = min([float(np.nanmin(surface.Z))] + [m[2] for m in surface.minima])
            spread = float(np.nanmax(surface.Z)) - lowest
            with np.errstate(all="ignore"):
                z = np.log10(np.maximum(loss - lowest, 0) + max(spread * 1e-6, 1e-12))
        else:
            z = np.asarray(loss, dtype=np.float64)
        return np.clip(z, zlo, zhi + 0.05 * (zhi - zlo))

    pts = []
    for p in paths:
        xy = np.clip(_display_xy(p.xy, domain), [x0, y0], [x1, y1])
        z = height_of(p.xy, p.loss)
        pts.append((xy, z))
        fig.add_trace(go.Scatter3d(x=_round(xy[:, 0]), y=_round(xy[:, 1]), z=_round(z), mode="lines", name=p.label,
                                   line=dict(color=p.colour, width=4), hoverinfo="skip"))
    first = len(fig.data)
    steps = frame_steps(_clock_end(paths, align), max_frames)
    for p, (xy, z) in zip(paths, pts):
        i = _head_at(p, steps[-1], align)
        fig.add_trace(go.Scatter3d(x=[xy[i, 0]], y=[xy[i, 1]], z=[z[i]], mode="markers", showlegend=False,
                                   name=p.label + " (now)", marker=dict(size=6, color=p.colour), hoverinfo="skip"))
    indices = list(range(first, len(fig.data)))
    fig.frames = [go.Frame(name=str(s), traces=indices, data=[
        go.Scatter3d(x=[xy[_head_at(p, s, align), 0]], y=[xy[_head_at(p, s, align), 1]],
                     z=[z[_head_at(p, s, align)]])
        for p, (xy, z) in zip(paths, pts)]) for s in steps]
    _add_player(fig, steps, frame_ms, redraw=True, active=len(steps) - 1,
                prefix="forward passes " if align == "forward_passes" else "step ")
    fig.update_layout(height=height, margin=dict(l=0, r=0, t=30, b=0),
                      scene=dict(xaxis=dict(title="x", range=[x0, x1]), yaxis=dict(title="y", range=[y0, y1]),
                                 zaxis=dict(title="log10(f − f_min)" if surface.log else "f"),
                                 aspectmode="manual", aspectratio=dict(x=1, y=(y1 - y0) / (x1 - x0), z=0.6)),
                      legend=dict(orientation="h", yanchor="bottom", y=1.0), uirevision=surface.title)
    return fig


# --------------------------------------------------------------------------------- loss curves
def loss_gap(loss: np.ndarray, f_min: float | None) -> np.ndarray:
    """``loss − f_min`` (floored at 1e-16 so a log axis can show it), or the loss if f_min is unknown."""
    loss = np.asarray(loss, dtype=np.float64)
    if f_min is None:
        return loss
    with np.errstate(all="ignore"):
        return np.maximum(loss - f_min, 1e-16)


def loss_figure(paths: Sequence[Path], f_min: float | None, *, log: bool = True, x: str = "forward_passes",
                title: str = "", height: int = 360) -> go.Figure:
    """Loss against forward passes (log y), one line per path; with repeats the median and a band.

    With a known minimum the y value is the gap f − f_min (a log axis needs positive values); without
    one it is f itself and the axis is linear if any value is ≤ 0. A diverged run ends in an ✕.
    """
    fig = go.Figure()
    any_nonpositive = False
    for p in paths:
        main = p.median if p.median is not None else p.loss
        fp = p.extra.get("band_forward_passes", p.forward_passes) if p.median is not None else p.forward_passes
        xs = np.asarray(fp if x == "forward_passes" else np.arange(len(main)), dtype=np.float64)
        y = loss_gap(main, f_min)
        any_nonpositive |= bool(np.nanmin(y) <= 0) if np.isfinite(y).any() else False
        if p.lower is not None and p.upper is not None:
            lo, hi = loss_gap(p.lower, f_min), loss_gap(p.upper, f_min)
            n = min(len(xs), len(lo))
            fig.add_trace(go.Scatter(x=np.concatenate([xs[:n], xs[:n][::-1]]),
                                     y=_round(np.concatenate([hi[:n], lo[:n][::-1]])),
                                     fill="toself", fillcolor=_rgba(p.colour, 0.18), line=dict(width=0),
                                     hoverinfo="skip", showlegend=False, name=p.label + " band",
                                     legendgroup=p.label))
        n = min(len(xs), len(y))
        fig.add_trace(go.Scatter(x=xs[:n], y=_round(y[:n]), mode="lines", name=p.label, legendgroup=p.label,
                                 line=dict(color=p.colour, width=2, dash=p.dash),
                                 hovertemplate=p.label + "<br>%{x} forward passes<br>%{y:.4g}<extra></extra>"))
        if p.diverged_at is not None and len(p.loss):
            end_x = float(p.forward_passes[-1]) if x == "forward_passes" else float(len(p.loss) - 1)
            end_y = float(loss_gap(p.loss[-1:], f_min)[0])
            fig.add_trace(go.Scatter(x=[end_x], y=[end_y], mode="markers", showlegend=False,
                                     name=p.label + " diverged", legendgroup=p.label,
                                     marker=dict(symbol="x", size=12, color="#ff2020"),
                                     hovertemplate=p.label + f" diverged at step {p.diverged_at}<extra></extra>"))
    use_log = log and not any_nonpositive
    fig.update_yaxes(type="log" if use_log else "linear",
                     title_text=("f − f_min" if f_min is not None else "f") + (" (log)" if use_log else ""))
    fig.update_xaxes(title_text="forward passes" if x == "forward_passes" else "step")
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=40 if title else 20, b=10),
                      title=dict(text=title, x=0.01) if title else None,
                      legend=dict(orientation="h", yanchor="bottom", y=1.0, x=1, xanchor="right"))
    return fig


def _rgba(colour: str, alpha: float) -> str:
    if colour.startswith("rgb("):
        return colour.replace("rgb(", "rgba(").replace(")", f", {alpha})")
    c = colour.lstrip("#")
    r, g, b = (int(c[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r}, {g}, {b}, {alpha})"


# --------------------------------------------------------------------------------- small multiples
def small_multiples(surface: Surface, panels: Sequence[tuple[str, Sequence[Path]]], *, ncols: int = 3,
                    height_per_row: int = 300) -> go.Figure:
    """One small contour per panel (a value of the swept hyperparameter) with that value's paths."""
    n = max(len(panels), 1)
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig = make_subplots(rows=nrows, cols=ncols, subplot_titles=[t for t, _ in panels],
                        horizontal_spacing=0.04, vertical_spacing=0.10)
    (x0, x1), (y0, y1) = surface.domain
    for k, (title, paths) in enumerate(panels):
        r, c = divmod(k, ncols)
        fig.add_trace(_contour_trace(surface, showscale=False), row=r + 1, col=c + 1)
        fig.add_trace(_minima_trace(surface), row=r + 1, col=c + 1)
        for p in paths:
            xy = _display_xy(p.xy, surface.domain)
            fig.add_trace(go.Scatter(x=_round(xy[:, 0], 4), y=_round(xy[:, 1], 4), mode="lines", showlegend=False,
                                     name=f"{title} {p.label}", line=dict(color=p.colour, width=1.2, dash=p.dash),
                                     opacity=0.8,
                                     hoverinfo="skip"), row=r + 1, col=c + 1)
            end_symbol = "x" if p.diverged_at is not None else "circle"
            fig.add_trace(go.Scatter(x=[xy[-1, 0]], y=[xy[-1, 1]], mode="markers", showlegend=False,
                                     name=f"{title} {p.label} end",
                                     marker=dict(symbol=end_symbol, size=9 if end_symbol == "x" else 6,
                                                 color="#ff2020" if end_symbol == "x" else p.colour,
                                                 line=dict(color="white", width=1)),
                                     hovertemplate=(f"{p.label}: diverged at step {p.diverged_at}" if p.diverged_at
                                                    else f"{p.label}: end") + "<extra></extra>"),
                          row=r + 1, col=c + 1)
    fig.update_xaxes(range=[x0, x1], showticklabels=False)
    fig.update_yaxes(range=[y0, y1], showticklabels=False)
    for k in range(n):
        axis = "" if k == 0 else str(k + 1)
        fig.layout[f"yaxis{axis}"].update(scaleanchor=f"x{axis}", scaleratio=1)
    fig.update_layout(height=height_per_row * nrows, margin=dict(l=10, r=10, t=40, b=10))
    return fig


# --------------------------------------------------------------------------------- inside a step
def moments_figure(surface: Surface, path_xy: np.ndarray, snapshot, *, colour: str = "#1f77b4",
                   stored_colour: str = "#2ca02c", height: int = 420) -> go.Figure:
    """Lesson 6: left, AdaMeZO's path up to the chosen step on the contour, with the K regenerated
    directions drawn from the current point as arrows (each z_k scaled by its weight a_k c_k in m, to a
    common length); right, the rebuilt moments m and √v per coordinate next to ZO-Adam's stored m̂, √v̂.

    ``snapshot`` is a ``landscapes.inside.MomentSnapshot``; ``path_xy`` the path up to that step."""
    fig = make_subplots(rows=1, cols=2, column_widths=[0.55, 0.45], horizontal_spacing=0.12,
                        subplot_titles=(f"The {len(snapshot.pairs)} directions AdaMeZO regenerates at step "
                                        f"{snapshot.step}", "Moments: rebuilt (AdaMeZO) and stored (ZO-Adam)"))
    fig.add_trace(_contour_trace(surface, showscale=False), row=1, col=1)
    xy = _display_xy(np.asarray(path_xy), surface.domain)
    fig.add_trace(go.Scatter(x=_round(xy[:, 0], 5), y=_round(xy[:, 1], 5), mode="lines", name="AdaMeZO path",
                             line=dict(color=colour, width=2), hoverinfo="skip"), row=1, col=1)
    (x0, x1), (y0, y1) = surface.domain
    span = 0.18 * min(x1 - x0, y1 - y0)
    here = np.asarray(snapshot.point, dtype=np.float64)
    contrib = (snapshot.weights_m * np.array([c for _, c in snapshot.pairs]))[:, None] * snapshot.directions
    scale = span / max(float(np.abs(contrib).max()), 1e-300)
    for k, vec in enumerate(contrib):
        end = here - scale * vec  # the step goes against m
        fig.add_annotation(x=float(end[0]), y=float(end[1]), ax=float(here[0]), ay=float(here[1]),
                           xref="x", yref="y", axref="x", ayref="y", showarrow=True, arrowhead=2,
                           arrowwidth=2, arrowcolor=_rgba(colour, max(0.25, 1 - k / max(len(contrib), 1))),
                           text="", hovertext=f"k = {k}: seed {snapshot.pairs[k][0]}, c = {snapshot.pairs[k][1]:.4g}")
    fig.add_trace(go.Scatter(x=[here[0]], y=[here[1]], mode="markers", name="θ at this step",
                             marker=dict(size=10, color=colour, line=dict(color="white", width=1.5))), row=1, col=1)
    labels = ["m (x)", "m (y)", "√v (x)", "√v (y)"]
    rebuilt = [snapshot.m[0], snapshot.m[1], math.sqrt(snapshot.v[0]), math.sqrt(snapshot.v[1])]
    stored = [snapshot.stored_m[0], snapshot.stored_m[1], math.sqrt(snapshot.stored_v[0]),
              math.sqrt(snapshot.stored_v[1])]
    fig.add_trace(go.Bar(x=labels, y=rebuilt, name=f"AdaMeZO: rebuilt from {len(snapshot.pairs)} (seed, c) pairs "
                         f"({snapshot.adamezo_bytes} B)", marker_color=colour,
                         hovertemplate="%{x}: %{y:.6g}<extra>rebuilt</extra>"), row=1, col=2)
    fig.add_trace(go.Bar(x=labels, y=stored, name=f"ZO-Adam: stored tensors ({snapshot.zo_adam_bytes} B)",
                         marker_color=stored_colour, hovertemplate="%{x}: %{y:.6g}<extra>stored</extra>"),
                  row=1, col=2)
    fig.update_xaxes(range=[x0, x1], row=1, col=1, title_text="x")
    fig.update_yaxes(range=[y0, y1], row=1, col=1, title_text="y", scaleanchor="x", scaleratio=1)
    fig.update_yaxes(title_text="value", exponentformat="e", row=1, col=2)
    fig.update_layout(barmode="group", height=height, margin=dict(l=10, r=10, t=60, b=10),
                      legend=dict(orientation="h", yanchor="top", y=-0.15, x=0))
    return fig


def spsa_figure(draws: Sequence, *, colour: str = "#d62728", height: int = 420) -> go.Figure:
    """Lesson 7: left, every estimate c·z (a dot), the true gradient and the average estimate (arrows from
    the origin); right, the error of the running average against the number of draws (log-log), with
    the 1/√n line it follows. ``draws``: ``landscapes.inside.SpsaDraws`` of one or more seeds (pooled)."""
    est = np.concatenate([d.estimates for d in draws])
    grad = np.asarray(draws[0].gradient, dtype=np.float64)
    mean = est.mean(axis=0)
    norm = float(np.linalg.norm(grad))
    fig = make_subplots(rows=1, cols=2, column_widths=[0.5, 0.5], horizontal_spacing=0.12,
                        subplot_titles=(f"{len(est)} estimates c·z of ∇f", "Error of the average of n estimates"))
    fig.add_trace(go.Scatter(x=_round(est[:, 0], 4), y=_round(est[:, 1], 4), mode="markers", name="one estimate c·z",
                             marker=dict(size=4, color=_rgba(colour, 0.35)),
                             hovertemplate="c·z = (%{x:.4g}, %{y:.4g})<extra></extra>"), row=1, col=1)
    for vec, name, col, dash in ((grad, "true gradient ∇f", "#222222", "solid"),
                                 (mean, "average estimate", colour, "dash")):
        fig.add_trace(go.Scatter(x=[0, vec[0]], y=[0, vec[1]], mode="lines+markers", name=name,
                                 line=dict(color=col, width=3, dash=dash), marker=dict(size=[0, 10], color=col),
                                 hovertemplate=name + " = (%{x:.4g}, %{y:.4g})<extra></extra>"), row=1, col=1)
    n = np.arange(1, len(est) + 1)
    running = np.cumsum(est, axis=0) / n[:, None]
    err = np.linalg.norm(running - grad, axis=1) / norm
    keep = np.unique(np.geomspace(1, len(est), 200).astype(int)) - 1
    fig.add_trace(go.Scatter(x=n[keep], y=_round(err[keep]), mode="lines", name="error of the average",
                             line=dict(color=colour, width=2)), row=1, col=2)
    ref = math.sqrt(2) / np.sqrt(n[keep])
    fig.add_trace(go.Scatter(x=n[keep], y=_round(ref), mode="lines", name="√2 / √n",
                             line=dict(color="#777777", width=1.5, dash="dot")), row=1, col=2)
    lim = 1.1 * float(np.quantile(np.abs(est), 0.98))
    fig.update_xaxes(range=[-lim, lim], title_text="∂f/∂x estimate", row=1, col=1)
    fig.update_yaxes(range=[-lim, lim], title_text="∂f/∂y estimate", scaleanchor="x", scaleratio=1, row=1, col=1)
    fig.update_xaxes(type="log", title_text="number of estimates averaged (n)", exponentformat="power", row=1, col=2)
    fig.update_yaxes(type="log", title_text="|average − ∇f| / |∇f|", exponentformat="power", row=1, col=2)
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=60, b=10),
                      legend=dict(orientation="h", yanchor="top", y=-0.18, x=0))
    return fig


# --------------------------------------------------------------------------------- memory bars
def memory_figure(rows: Sequence[dict], *, height: int = 380) -> go.Figure:
    """Bytes of optimizer state per optimizer and model size (log y): rows of
    ``{"optimizer", "label", "params", "state_bytes", "colour"}``."""
    fig = go.Figure()
    sizes = sorted({r["params"] for r in rows})
    labels = [_param_text(s) for s in sizes]
    by_opt: dict[str, list[dict]] = {}
    for r in rows:
        by_opt.setdefault(r["optimizer"], []).append(r)
    for name, rs in by_opt.items():
        values = {r["params"]: r["state_bytes"] for r in rs}
        y = [max(values.get(s, 0), 1) for s in sizes]
        fig.add_trace(go.Bar(x=labels, y=y, name=rs[0]["label"], marker_color=rs[0]["colour"],
                             text=[human_bytes(values.get(s, 0)) for s in sizes], textposition="outside",
                             hovertemplate=rs[0]["label"] + "<br>%{x} parameters<br>%{text}<extra></extra>"))
    fig.update_yaxes(type="log", title_text="optimizer state (bytes, log)")
    fig.update_xaxes(title_text="trainable parameters")
    fig.update_layout(barmode="group", height=height, margin=dict(l=10, r=10, t=30, b=10),
                      legend=dict(orientation="h", yanchor="bottom", y=1.0))
    return fig


def _param_text(n: int) -> str:
    for unit, size in (("B", 10**9), ("M", 10**6), ("k", 10**3)):
        if n >= size:
            return f"{n / size:g}{unit}"
    return str(n)


def human_bytes(n: float) -> str:
    """Bytes as text with binary units: 16 B, 1.5 KiB, 2 GiB."""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} TiB"


# --------------------------------------------------------------------------------- LLM charts
def llm_figure(series: Sequence[dict], y: str, *, x: str = "forward_passes", title: str = "", log: bool = False,
               height: int = 320) -> go.Figure:
    """Lines of ``y`` against ``x`` for several runs: ``series`` items ``{"label", "colour", "records"}``,
    where ``records`` is a list of dicts (run records); records without ``y`` are skipped."""
    fig = go.Figure()
    for s in series:
        pts = [(r[x], r[y]) for r in s["records"] if r.get(y) is not None and r.get(x) is not None]
        fig.add_trace(go.Scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], mode="lines+markers" if y.startswith("eval") else "lines",
                                 name=s["label"], line=dict(color=s["colour"], width=2)))
    fig.update_xaxes(title_text=x.replace("_", " "))
    fig.update_yaxes(title_text=y.replace("_", " "), type="log" if log else "linear")
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=40 if title else 20, b=10),
                      title=dict(text=title, x=0.01) if title else None,
                      legend=dict(orientation="h", yanchor="bottom", y=1.0, x=1, xanchor="right"))
    return fig


# --------------------------------------------------------------------------------- matplotlib exports
def mpl_contour(surface: Surface, paths: Sequence[Path], *, upto: int | None = None, figsize=(6.4, 5.2), dpi=100):
    """A matplotlib figure of the contour with the paths (up to step ``upto``), for PNG export."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=dpi)
    ax = fig.add_subplot(1, 1, 1)
    C = np.ma.masked_invalid(surface.C)
    cs = ax.contourf(surface.xs, surface.ys, C, levels=30, cmap="viridis")
    ax.contour(surface.xs, surface.ys, C, levels=30, colors="white", linewidths=0.3, alpha=0.4)
    fig.colorbar(cs, ax=ax, label="log10(f − f_min)" if surface.log else "f")
    for m in surface.minima:
        ax.plot(m[0], m[1], marker="*", color="white", markeredgecolor="black", markersize=14, zorder=5)
    for p in paths:
        xy = _display_xy(p.xy, surface.domain)
        n = len(xy) if upto is None else min(upto + 1, len(xy))
        ax.plot(xy[:n, 0], xy[:n, 1], color=p.colour, lw=1.4, label=p.label)
        ax.plot(xy[n - 1, 0], xy[n - 1, 1], "o", color=p.colour, markeredgecolor="white", markersize=8)
        if p.diverged_at is not None and n == len(xy):
            ax.plot(xy[-1, 0], xy[-1, 1], "x", color="red", markersize=14, mew=3)
    (x0, x1), (y0, y1) = surface.domain
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_aspect("equal")
    ax.set_title(surface.title, fontsize=10)
    if paths:
        ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return fig


def png_bytes(fig) -> bytes:
    """A matplotlib figure as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def gif_bytes(surface: Surface, paths: Sequence[Path], *, frames: int = 40, fps: int = 10, dpi: int = 70,
              align: str = "step") -> bytes:
    """The animation as a GIF (matplotlib's FuncAnimation and PillowWriter): heads moving along the paths."""
    from matplotlib.animation import FuncAnimation, PillowWriter

    fig = mpl_contour(surface, [], figsize=(5.6, 4.6), dpi=dpi)
    ax = fig.axes[0]
    shown = [_display_xy(p.xy, surface.domain) for p in paths]
    lines = [ax.plot([], [], color=p.colour, lw=1.6, label=p.label)[0] for p in paths]
    heads = [ax.plot([], [], "o", color=p.colour, markeredgecolor="white", markersize=8)[0] for p in paths]
    if paths:
        ax.legend(loc="upper right", fontsize=8)
    steps = frame_steps(_clock_end(paths, align), frames)
    label = ax.text(0.02, 0.96, "", transform=ax.transAxes, color="white", fontsize=9, va="top")

    def draw(k: int):
        s = steps[k]
        for p, line, head, xy in zip(paths, lines, heads, shown):
            i = _head_at(p, s, align)
            line.set_data(xy[:i + 1, 0], xy[:i + 1, 1])
            head.set_data([xy[i, 0]], [xy[i, 1]])
        label.set_text(f"forward passes {s}" if align == "forward_passes" else f"step {s}")
        return [*lines, *heads, label]

    anim = FuncAnimation(fig, draw, frames=len(steps), blit=False)
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "animation.gif")
        anim.save(out, writer=PillowWriter(fps=fps))
        with open(out, "rb") as fh:
            return fh.read()


def trajectories_csv(paths: Sequence[Path]) -> str:
    """Every path as CSV rows: optimizer, seed, step, x, y, loss, forward_passes, diverged_at."""
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    out.writerow(["optimizer", "seed", "step", "x", "y", "loss", "forward_passes", "diverged_at"])
    for p in paths:
        seed = p.extra.get("seed", "")
        div = "" if p.diverged_at is None else p.diverged_at
        out.writerows((p.label, seed, i, repr(float(p.xy[i, 0])), repr(float(p.xy[i, 1])), repr(float(p.loss[i])),
                       int(p.forward_passes[i]), div) for i in range(len(p.loss)))
    return buf.getvalue()


def records_csv(records: Sequence[dict]) -> str:
    """LLM run records as CSV: one row a record, one column per field any record has (sorted; a field
    a record lacks, e.g. eval_accuracy between evaluations, is empty)."""
    columns = sorted({k for r in records for k in r})
    buf = io.StringIO()
    out = csv.DictWriter(buf, columns, lineterminator="\n")
    out.writeheader()
    out.writerows(records)
    return buf.getvalue()
