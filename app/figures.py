"""Pure figure builders: plain data in, a Plotly figure (or matplotlib figure / bytes) out.

No Streamlit and no optimizer math here; the pages compute through ``landscapes``/``optimizers`` and
hand the results to these functions, which the tests call directly.

Look (the same on every page and in every export):

- Every optimizer has one :class:`Style`: a colour from Okabe and Ito's palette for colour-vision
  deficiencies, its own line dash and its own marker, so two optimizers never differ by colour alone.
  The registry entry's ``colour_slot`` (else the registry order) picks it.
- Landscapes are drawn in greys (light at the minimum, darker uphill), so that no optimizer's colour
  disappears into the background; paths carry a white outline. Swept values take Okabe-Ito colours
  in order, none of them grey.
- Numbers: plain or scientific notation (``1e-6``, never SI prefixes), powers of ten only on log axes,
  bytes in B / KB / MB / GB.

Animation runs in the browser (``app/chart.py``): the contour is sent at its last step with, in
``layout.meta``, the *tracks* of every path (its trail, its white outline and its head, with the clock
value of each point); the player slices them to the current clock. The loss plot's cursor and the 3-D
view follow the same clock. No Plotly frames, so a figure holds each path once.
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

#: Okabe & Ito (2008), "Color Universal Design": distinguishable under the common colour-vision deficiencies.
OKABE_ITO = {"black": "#000000", "orange": "#E69F00", "sky": "#56B4E9", "green": "#009E73", "yellow": "#F0E442",
             "blue": "#0072B2", "vermillion": "#D55E00", "purple": "#CC79A7"}


@dataclass(frozen=True)
class Style:
    """How one optimizer is drawn everywhere: colour, Plotly dash and marker, matplotlib equivalents."""

    colour: str
    dash: str
    marker: str
    mpl_dash: tuple | str
    mpl_marker: str


#: Styles by colour slot (slot i: the registry's ``colour_slot``, else its i-th optimizer).
SLOT_STYLES: tuple[Style, ...] = (
    Style(OKABE_ITO["vermillion"], "dash", "square", (0, (5, 2.5)), "s"),            # MeZO
    Style(OKABE_ITO["blue"], "solid", "circle", "-", "o"),                           # AdaMeZO
    Style(OKABE_ITO["green"], "dashdot", "triangle-up", (0, (6, 2, 1.5, 2)), "^"),   # ZO-Adam
    Style(OKABE_ITO["orange"], "longdash", "cross", (0, (10, 3)), "P"),              # HiZOO
    Style(OKABE_ITO["purple"], "dot", "diamond", (0, (1.2, 1.8)), "D"),              # Adam
    Style(OKABE_ITO["sky"], "longdashdot", "star", (0, (10, 3, 2, 3)), "*"),         # AdamW
    Style(OKABE_ITO["black"], "6px,2px,2px,2px,2px,2px", "x", (0, (6, 2, 2, 2, 2, 2)), "X"),
    Style("#882255", "2px,4px", "hexagon", (0, (2, 4)), "h"),                       # (Tol's wine)
)
#: Swept values of one hyperparameter: Okabe-Ito colours in order (no yellow: unreadable on white).
SWEEP_COLOURS = tuple(OKABE_ITO[k] for k in ("blue", "vermillion", "green", "orange", "purple", "sky", "black")) \
    + ("#882255",)
#: The landscape's greys: the lowest values lightest, so coloured paths stand out where they end.
GREYS = ("#ffffff", "#9c9c9c")
CONTOUR_SCALE = [[0.0, GREYS[0]], [1.0, GREYS[1]]]
#: Paths are subsampled to at most this many points for display (positions only; the table and the
#: CSV use every step).
MAX_DISPLAY_POINTS = 2500
#: The colour of each slot (the registry's ``colour_slot`` indexes it; :func:`style_for` has the rest).
PALETTE = [st.colour for st in SLOT_STYLES]
MAX_FRAMES = 100


def slot_of(name: str) -> int:
    """The colour slot of optimizer ``name``: its registry entry's ``colour_slot`` when it has one, else
    its position in the registry (names outside the registry take the last slot)."""
    from optimizers import OPTIMIZERS

    entry = OPTIMIZERS.get(name)
    slot = getattr(entry, "colour_slot", None) if entry is not None else None
    if isinstance(slot, int):
        return slot % len(SLOT_STYLES)
    names = list(OPTIMIZERS)
    return names.index(name) % len(SLOT_STYLES) if name in names else len(SLOT_STYLES) - 1


def style_for(name: str) -> Style:
    """The :class:`Style` of optimizer ``name`` (the same on every page and in every export)."""
    return SLOT_STYLES[slot_of(name)]


def colour_for(name: str, index: int = 0) -> str:
    """The colour of optimizer ``name`` (``index`` is kept for old callers and ignored)."""
    return style_for(name).colour


DASHES = tuple(st.dash for st in SLOT_STYLES)


def optimizer_dashes(names: Sequence[str]) -> dict[str, str]:
    """Each optimizer's own dash (for figures where colour already encodes something else)."""
    return {n: style_for(n).dash for n in names}


def sweep_colours(count: int) -> list[str]:
    """``count`` colours for the values of one swept hyperparameter (Okabe-Ito, in order; repeats after 8)."""
    return [SWEEP_COLOURS[i % len(SWEEP_COLOURS)] for i in range(max(count, 1))]


# --------------------------------------------------------------------------------- numbers
def number_text(v: float) -> str:
    """A number as a student reads it: plain from 0.001 to 9999, else ``1e-6`` / ``2.5e+8`` (no SI prefixes)."""
    v = float(v)
    if not math.isfinite(v):
        return "∞" if v > 0 else ("−∞" if v < 0 else "NaN")
    if v == 0 or 1e-3 <= abs(v) < 1e4:
        return f"{v:.4g}"
    mantissa, exponent = f"{v:.2e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"


def log_ticks(values, text=number_text, max_ticks: int = 8) -> dict:
    """Axis settings for a log axis over ``values``: ticks at powers of ten only (every k-th decade when
    there are many; 2× and 5× too when the data spans less than two decades), labelled by ``text``."""
    v = np.asarray([x for x in np.ravel(np.asarray(values, dtype=np.float64)) if np.isfinite(x) and x > 0])
    if not v.size:
        return {"type": "log"}
    lo, hi = math.floor(math.log10(v.min())), math.ceil(math.log10(v.max()))
    hi = max(hi, lo + 1)
    every = max(1, math.ceil((hi - lo + 1) / max_ticks))
    vals = [10.0 ** k for k in range(lo, hi + 1) if (k - lo) % every == 0]
    if math.log10(v.max() / v.min()) < 2:  # less than two decades of data: 2× and 5× ticks too
        vals = sorted({m * 10.0 ** k for k in range(lo, hi) for m in (1, 2, 5)} | {10.0 ** hi})
    return {"type": "log", "tickmode": "array", "tickvals": vals, "ticktext": [text(x) for x in vals]}


def human_bytes(n: float) -> str:
    """Bytes with a unit: 16 B, 1.5 KB, 2 GB (decimal units: 1 KB = 1000 B)."""
    n = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1000
    return f"{n:.3g} TB"


#: Legends sit in a row above the plot (Plotly widens the top margin to fit however many lines they take).
#: Figures carry no title of their own: the chart component shows it above the figure (``app.chart``), so
#: a title never meets a legend, and the x axis's title is alone at the bottom.
LEGEND_TOP = dict(orientation="h", x=0, xanchor="left", y=1.02, yanchor="bottom", bgcolor="rgba(0,0,0,0)")


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
        colorscale=CONTOUR_SCALE, ncontours=30, showscale=showscale,
        contours=dict(coloring="heatmap", showlines=True), line=dict(width=0.5, color="rgba(60,60,60,0.35)"),
        colorbar=dict(title=dict(text=label, side="right"), thickness=12, exponentformat="e") if showscale else None,
        hovertemplate="x=%{x:.3f}<br>y=%{y:.3f}<br>" + label + "=%{z:.3g}<extra></extra>",
        name="landscape", showlegend=False, **kw,
    )


def _colourbar_trace(surface: Surface) -> dict:
    """A scatter trace with no visible points that shows the colour bar of the background image."""
    C = surface.C[np.isfinite(surface.C)]
    lo, hi = (float(C.min()), float(C.max())) if C.size else (0.0, 1.0)
    label = "log10(f − f_min)" if surface.log else "f"
    return dict(type="scatter", x=[None], y=[None], mode="markers", name="landscape", showlegend=False,
                hoverinfo="skip",
                marker=dict(color=[lo, hi], cmin=lo, cmax=hi, colorscale=CONTOUR_SCALE, showscale=True,
                            colorbar=dict(title=dict(text=label, side="right"), thickness=12, exponentformat="e")))


def _greys_cmap():
    from matplotlib.colors import LinearSegmentedColormap

    return LinearSegmentedColormap.from_list("zo_greys", list(GREYS))


def contour_image(surface: Surface, pixels: int = 520) -> str:
    """Filled grey contours with thin lines as a PNG data URI (matplotlib), for a Plotly background image."""
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
        ax.contourf(surface.xs, surface.ys, C, levels=30, cmap=_greys_cmap())
        ax.contour(surface.xs, surface.ys, C, levels=30, colors="#3c3c3c", linewidths=0.4, alpha=0.35)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _minima_trace(surface: Surface, **kw) -> dict:
    return dict(type="scatter", x=[m[0] for m in surface.minima], y=[m[1] for m in surface.minima], mode="markers",
                name="minimum", showlegend=False,
                marker=dict(symbol="star", size=15, color="white", line=dict(color="black", width=1.5)),
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


def _display_points(n: int, limit: int = MAX_DISPLAY_POINTS) -> np.ndarray:
    """Indices of the points drawn of a path of ``n`` points: all, or ``limit`` evenly (both ends kept)."""
    if n <= limit:
        return np.arange(n)
    return np.unique(np.round(np.linspace(0, n - 1, limit)).astype(np.int64))


def _clock_of(path: Path, keep: np.ndarray, align: str) -> list[int] | None:
    """The clock value of each kept point (``None``: the point's index is its step)."""
    if align == "forward_passes":
        return np.asarray(path.forward_passes)[keep].astype(np.int64).tolist()
    if len(keep) == len(path.loss):
        return None
    return keep.astype(np.int64).tolist()


def _style(path: Path) -> Style:
    """A path's style: its optimizer's (``extra["name"]``), with the path's own colour and dash."""
    base = style_for(path.extra.get("name", "")) if path.extra.get("name") else None
    marker = base.marker if base else "circle"
    return Style(path.colour, path.dash if path.dash != "solid" or base is None else base.dash, marker,
                 base.mpl_dash if base else "-", base.mpl_marker if base else "o")


def _legend_entry(label: str, style: Style) -> dict:
    """A legend-only trace showing a path's colour, dash and marker together (no points)."""
    return dict(type="scatter", x=[None], y=[None], mode="lines+markers", name=label, legendgroup=label,
                line=dict(color=style.colour, width=2.5, dash=style.dash),
                marker=dict(symbol=style.marker, size=9, color=style.colour, line=dict(color="white", width=1)),
                hoverinfo="skip")


# --------------------------------------------------------------------------------- the contour
def contour_figure(surface: Surface, paths: Sequence[Path], **kw) -> go.Figure:
    """:func:`contour_figure_dict` validated by Plotly (for tests and exports)."""
    return go.Figure(contour_figure_dict(surface, paths, **kw))


def contour_figure_dict(
    surface: Surface,
    paths: Sequence[Path],
    *,
    height: int = 560,
    align: str = "step",
    image: str | None = None,
    channel: str = "",
    seconds: float = 6.0,
) -> dict:
    """The landscape with every path, ready to be animated by the chart's player, as a plain dict.

    The landscape is a background image (``layout.images[0]``, grey filled contours drawn by matplotlib)
    and trace 0 only carries its colour bar. Traces: 0 colour bar, 1 minima, 2 start, then per path its
    legend entry, white outline, line and head, then a divergence marker trace (empty if none diverged).
    ``layout.meta.zo_player`` lists the tracks the player animates: each path's outline and line as
    trails and its head, with the clock value of every point (a step, or with ``align="forward_passes"``
    a number of forward passes, so that runs with different costs per step move in step with their
    cost). ``image`` is the background from :func:`contour_image` (pass a cached one; made here if
    omitted). Built without Plotly's objects (their validation cost ~0.1 s a re-render).
    """
    domain = surface.domain
    (x0, x1), (y0, y1) = domain
    data = [_colourbar_trace(surface), _minima_trace(surface)]
    sx, sy = surface.start if surface.start is not None else (
        (paths[0].xy[0] if paths else (math.nan, math.nan)))
    data.append(dict(type="scatter", x=[float(sx)], y=[float(sy)], mode="markers", name="start", showlegend=False,
                     marker=dict(symbol="circle-open", size=15, color="#111111", line=dict(width=3)),
                     hovertemplate="start (%{x:.3f}, %{y:.3f})<extra></extra>"))
    tracks = []
    for p in paths:
        style = _style(p)
        keep = _display_points(len(p.xy))
        xy = _display_xy(p.xy, domain)[keep]
        t = _clock_of(p, keep, align)
        x, y = _round(xy[:, 0]), _round(xy[:, 1])
        data.append(_legend_entry(p.label, style))
        outline, line, head = len(data), len(data) + 1, len(data) + 2
        data.append(dict(type="scatter", x=x, y=y, mode="lines", name=p.label + " (outline)", legendgroup=p.label,
                         showlegend=False, line=dict(color="rgba(255,255,255,0.9)", width=6), hoverinfo="skip"))
        data.append(dict(type="scatter", x=x, y=y, mode="lines", name=p.label, legendgroup=p.label, showlegend=False,
                         line=dict(color=style.colour, width=2.5, dash=style.dash),
                         customdata=keep if t is None else np.asarray(t),
                         hovertemplate=p.label + (" step" if align == "step" else " forward passes")
                         + " %{customdata}<br>(%{x:.3f}, %{y:.3f})<extra></extra>"))
        data.append(dict(type="scatter", x=[float(x[-1])], y=[float(y[-1])], mode="markers", name=p.label + " (now)",
                         legendgroup=p.label, showlegend=False, hoverinfo="skip",
                         marker=dict(symbol=style.marker, size=13, color=style.colour,
                                     line=dict(color="white", width=2))))
        tracks += [{"trace": outline, "source": line, "mode": "trail", "t": t},
                   {"trace": line, "mode": "trail", "t": t},
                   {"trace": head, "source": line, "mode": "head", "t": t}]
    ends_x, ends_y, ends_text = [], [], []
    for p in paths:
        if p.diverged_at is not None:
            xy = _display_xy(p.xy[-1:], domain)
            ends_x.append(float(xy[0, 0]))
            ends_y.append(float(xy[0, 1]))
            ends_text.append(f"{p.label} diverged at step {p.diverged_at}")
    data.append(dict(type="scatter", x=ends_x, y=ends_y, mode="markers", name="diverged", showlegend=False,
                     hovertext=ends_text, hoverinfo="text",
                     marker=dict(symbol="x-thin", size=18, line=dict(width=4, color="#000000"))))
    layout = dict(
        images=[dict(source=image or contour_image(surface), xref="x", yref="y", x=x0, y=y1, sizex=x1 - x0,
                     sizey=y1 - y0, sizing="stretch", layer="below", opacity=1.0, name="landscape")],
        xaxis=dict(range=[x0, x1], title=dict(text="x"), constrain="domain", showgrid=False, zeroline=False,
                   ticks="outside", ticklen=5),
        yaxis=dict(range=[y0, y1], title=dict(text="y"), scaleanchor="x", scaleratio=1, constrain="domain",
                   showgrid=False, zeroline=False, ticks="outside", ticklen=5),
        height=height, margin=dict(l=10, r=10, t=10, b=10), legend=LEGEND_TOP, dragmode="pan",
        uirevision=surface.title,
        meta={"zo_channel": channel, "zo_player": {
            "clock_end": _clock_end(paths, align), "seconds": seconds, "tracks": tracks,
            "label": "forward passes" if align == "forward_passes" else "step"}},
    )
    return {"data": data, "layout": layout}


# --------------------------------------------------------------------------------- 3-D surface
def surface_figure(surface: Surface, paths: Sequence[Path], *, height: int = 560, align: str = "step",
                   channel: str = "") -> go.Figure:
    """The same runs on a 3-D surface of the colour values (log10(f − f_min) on a log landscape), the paths
    lifted a little above it so that they show, seen from above the start's side. It follows the
    contour's clock (``layout.meta.zo_follow`` on ``channel``)."""
    domain = surface.domain
    (x0, x1), (y0, y1) = domain
    C = surface.C
    fig = go.Figure()
    fig.add_trace(go.Surface(x=_round(surface.xs), y=_round(surface.ys), z=_round(C).astype(np.float32),
                             colorscale=CONTOUR_SCALE, opacity=0.95, showscale=False, name="landscape",
                             hovertemplate="x=%{x:.3f}<br>y=%{y:.3f}<br>%{z:.3g}<extra></extra>"))
    finite = C[np.isfinite(C)]
    zlo, zhi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    lift = 0.03 * (zhi - zlo or 1.0)

    def height_of(loss: np.ndarray) -> np.ndarray:
        # Colour-scale value of each point, computed the way the grid was (log of the gap, or f).
        if surface.log:
            lowest = min([float(np.nanmin(surface.Z))] + [m[2] for m in surface.minima])
            spread = float(np.nanmax(surface.Z)) - lowest
            with np.errstate(all="ignore"):
                z = np.log10(np.maximum(loss - lowest, 0) + max(spread * 1e-6, 1e-12))
        else:
            z = np.asarray(loss, dtype=np.float64)
        return np.clip(z, zlo, zhi + 0.05 * (zhi - zlo)) + lift

    tracks = []
    for p in paths:
        style = _style(p)
        keep = _display_points(len(p.xy), 1500)
        xy = np.clip(_display_xy(p.xy, domain), [x0, y0], [x1, y1])[keep]
        z = height_of(np.asarray(p.loss)[keep])
        t = _clock_of(p, keep, align)
        line = len(fig.data)
        fig.add_trace(go.Scatter3d(x=_round(xy[:, 0]), y=_round(xy[:, 1]), z=_round(z), mode="lines", name=p.label,
                                   line=dict(color=style.colour, width=5), hoverinfo="skip"))
        fig.add_trace(go.Scatter3d(x=[xy[-1, 0]], y=[xy[-1, 1]], z=[z[-1]], mode="markers", showlegend=False,
                                   name=p.label + " (now)", hoverinfo="skip",
                                   marker=dict(size=6, color=style.colour, line=dict(color="white", width=1))))
        tracks += [{"trace": line, "mode": "trail", "t": t}, {"trace": line + 1, "source": line, "mode": "head",
                                                              "t": t}]
    # Seen from high above the near (−y) side: the paths, lifted a little above the surface, stay in front of
    # it whatever the landscape (from the side, a ridge hid them).
    eye = dict(x=0.35, y=-1.45, z=1.75)
    axis = dict(nticks=4, exponentformat="e")
    fig.update_layout(height=height, margin=dict(l=0, r=0, t=30, b=10),
                      scene=dict(xaxis=dict(axis, title="x", range=[x0, x1]),
                                 yaxis=dict(axis, title="y", range=[y0, y1]),
                                 zaxis=dict(axis, title="log10(f − f_min)" if surface.log else "f"),
                                 aspectmode="manual", aspectratio=dict(x=1, y=(y1 - y0) / (x1 - x0), z=0.6),
                                 camera=dict(eye=eye)),
                      legend=LEGEND_TOP, uirevision=surface.title,
                      meta={"zo_channel": channel, "zo_follow": {"tracks": tracks}})
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
                title: str = "", height: int = 420, align: str = "step", channel: str = "") -> go.Figure:
    """Loss against forward passes (log y), one line per path; with repeats the median and a band.

    With a known minimum the y value is the gap f − f_min (a log axis needs positive values); without
    one it is f itself and the axis is linear if any value is ≤ 0. A diverged run ends in an ✕. A cursor
    (each optimizer's marker) follows the contour's clock on ``channel`` (``layout.meta.zo_follow``).
    ``title`` is not drawn in the figure: pass it to ``app.chart.plotly_charts``, which shows it above.
    """
    fig = go.Figure()
    any_nonpositive = False
    shown = []
    tracks = []
    for p in paths:
        style = _style(p)
        main = p.median if p.median is not None else p.loss
        fp = p.extra.get("band_forward_passes", p.forward_passes) if p.median is not None else p.forward_passes
        fp = np.asarray(fp, dtype=np.float64)
        xs = fp if x == "forward_passes" else np.arange(len(main), dtype=np.float64)
        y = loss_gap(main, f_min)
        any_nonpositive |= bool(np.nanmin(y) <= 0) if np.isfinite(y).any() else False
        if p.lower is not None and p.upper is not None:
            lo, hi = loss_gap(p.lower, f_min), loss_gap(p.upper, f_min)
            n = min(len(xs), len(lo))
            fig.add_trace(go.Scatter(x=np.concatenate([xs[:n], xs[:n][::-1]]),
                                     y=_round(np.concatenate([hi[:n], lo[:n][::-1]])),
                                     fill="toself", fillcolor=_rgba(style.colour, 0.12), line=dict(width=0),
                                     hoverinfo="skip", showlegend=False, name=p.label + " band",
                                     legendgroup=p.label))
            shown += [hi[:n], lo[:n]]
        n = min(len(xs), len(y))
        keep = _display_points(n)
        line = len(fig.data)
        fig.add_trace(go.Scatter(x=xs[keep], y=_round(y[keep]), mode="lines", name=p.label, legendgroup=p.label,
                                 line=dict(color=style.colour, width=2.5, dash=style.dash),
                                 hovertemplate=p.label + "<br>%{x} forward passes<br>%{y:.4g}<extra></extra>"))
        shown.append(y[:n])
        # Clock of each point: its step, or its forward passes on a forward-pass clock.
        t = (fp[:n][keep] if align == "forward_passes" else keep).astype(np.int64).tolist()
        fig.add_trace(go.Scatter(x=[xs[keep][-1]], y=[float(_round(y[keep][-1:])[0])], mode="markers",
                                 name=p.label + " (now)", legendgroup=p.label, showlegend=False, hoverinfo="skip",
                                 marker=dict(symbol=style.marker, size=11, color=style.colour,
                                             line=dict(color="white", width=1.5))))
        tracks.append({"trace": line + 1, "source": line, "mode": "head", "t": t})
        if p.diverged_at is not None and len(p.loss):
            end_x = float(p.forward_passes[-1]) if x == "forward_passes" else float(len(p.loss) - 1)
            end_y = float(loss_gap(p.loss[-1:], f_min)[0])
            fig.add_trace(go.Scatter(x=[end_x], y=[end_y], mode="markers", showlegend=False,
                                     name=p.label + " diverged", legendgroup=p.label,
                                     marker=dict(symbol="x", size=13, color="#000000"),
                                     hovertemplate=p.label + f" diverged at step {p.diverged_at}<extra></extra>"))
    use_log = log and not any_nonpositive
    label = ("f − f_min" if f_min is not None else "f") + (" (log)" if use_log else "")
    if use_log:
        values = np.concatenate(shown) if shown else np.zeros(0)
        values = values[np.isfinite(values) & (values > 0)]
        if values.size:
            # A run that blew up (to 1e100, say) would flatten every other curve: the axis stops at 10⁴ × the
            # largest starting loss; what goes beyond runs off the top.
            start = max(float(np.nanmax([loss_gap(p.loss[:1], f_min)[0] for p in paths])), float(values.min()))
            values = values[values <= 1e4 * start]
            lo, hi = float(values.min()), float(values.max())
            fig.update_yaxes(range=[math.log10(lo) - 0.1, math.log10(hi) + 0.1])
        fig.update_yaxes(title_text=label, **log_ticks(values))
    else:
        fig.update_yaxes(title_text=label, type="linear", exponentformat="e")
    fig.update_xaxes(title_text="forward passes" if x == "forward_passes" else "step", exponentformat="e")
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=10, b=10), legend=LEGEND_TOP,
                      meta={"zo_channel": channel, "zo_follow": {"tracks": tracks}})
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
    """One small grey contour per panel (a value of the swept hyperparameter) with that value's paths."""
    n = max(len(panels), 1)
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig = make_subplots(rows=nrows, cols=ncols, subplot_titles=[t for t, _ in panels],
                        horizontal_spacing=0.04, vertical_spacing=min(0.3, 70 / (height_per_row * nrows)))
    (x0, x1), (y0, y1) = surface.domain
    for k, (title, paths) in enumerate(panels):
        r, c = divmod(k, ncols)
        fig.add_trace(_contour_trace(surface, showscale=False), row=r + 1, col=c + 1)
        fig.add_trace(go.Scatter(_minima_trace(surface)), row=r + 1, col=c + 1)
        for p in paths:
            xy = _display_xy(p.xy, surface.domain)[_display_points(len(p.xy), 1000)]
            fig.add_trace(go.Scatter(x=_round(xy[:, 0], 4), y=_round(xy[:, 1], 4), mode="lines", showlegend=False,
                                     name=f"{title} {p.label} (outline)", hoverinfo="skip",
                                     line=dict(color="rgba(255,255,255,0.8)", width=4)), row=r + 1, col=c + 1)
            fig.add_trace(go.Scatter(x=_round(xy[:, 0], 4), y=_round(xy[:, 1], 4), mode="lines", showlegend=False,
                                     name=f"{title} {p.label}", line=dict(color=p.colour, width=1.6, dash=p.dash),
                                     hoverinfo="skip"), row=r + 1, col=c + 1)
            diverged = p.diverged_at is not None
            fig.add_trace(go.Scatter(x=[xy[-1, 0]], y=[xy[-1, 1]], mode="markers", showlegend=False,
                                     name=f"{title} {p.label} end",
                                     marker=dict(symbol="x" if diverged else "circle", size=10 if diverged else 7,
                                                 color="#000000" if diverged else p.colour,
                                                 line=dict(color="white", width=1)),
                                     hovertemplate=(f"{p.label}: diverged at step {p.diverged_at}" if diverged
                                                    else f"{p.label}: end") + "<extra></extra>"),
                          row=r + 1, col=c + 1)
    bare = dict(showticklabels=False, ticks="", showgrid=False, zeroline=False, showline=False, constrain="domain")
    fig.update_xaxes(range=[x0, x1], **bare)
    fig.update_yaxes(range=[y0, y1], **bare)
    for k in range(n):
        axis = "" if k == 0 else str(k + 1)
        fig.layout[f"yaxis{axis}"].update(scaleanchor=f"x{axis}", scaleratio=1)
    for a in fig.layout.annotations:  # panel titles in the page's chart font size, not make_subplots' 16 px
        a.font.size = None
    fig.update_layout(height=height_per_row * nrows, margin=dict(l=10, r=10, t=50, b=10))
    return fig


# --------------------------------------------------------------------------------- inside a step
def moments_figures(surface: Surface, path_xy: np.ndarray, snapshot, *, colour: str = "#0072B2",
                    stored_colour: str = "#009E73", height: int = 420) -> tuple[go.Figure, go.Figure]:
    """Lesson 6, two figures: AdaMeZO's path up to the chosen step on the contour, with the K regenerated
    directions drawn from the current point as arrows (each z_k scaled by its weight a_k c_k in m, to a
    common length, newest darkest); and the rebuilt moments m and √v per coordinate next to ZO-Adam's
    stored m̂, √v̂. ``snapshot`` is a ``landscapes.inside.MomentSnapshot``; ``path_xy`` the path up to that step."""
    left = go.Figure()
    left.add_trace(_contour_trace(surface, showscale=False))
    xy = _display_xy(np.asarray(path_xy), surface.domain)
    left.add_trace(go.Scatter(x=_round(xy[:, 0], 5), y=_round(xy[:, 1], 5), mode="lines", name="AdaMeZO path",
                              line=dict(color=colour, width=2.5), hoverinfo="skip"))
    (x0, x1), (y0, y1) = surface.domain
    span = 0.18 * min(x1 - x0, y1 - y0)
    here = np.asarray(snapshot.point, dtype=np.float64)
    contrib = (snapshot.weights_m * np.array([c for _, c in snapshot.pairs]))[:, None] * snapshot.directions
    scale = span / max(float(np.abs(contrib).max()), 1e-300)
    for k, vec in enumerate(contrib):
        end = here - scale * vec  # the step goes against m
        left.add_annotation(x=float(end[0]), y=float(end[1]), ax=float(here[0]), ay=float(here[1]),
                            xref="x", yref="y", axref="x", ayref="y", showarrow=True, arrowhead=2,
                            arrowwidth=2.5, arrowcolor=_rgba(colour, max(0.25, 1 - k / max(len(contrib), 1))),
                            text="", hovertext=f"k = {k}: seed {snapshot.pairs[k][0]}, c = {snapshot.pairs[k][1]:.4g}")
    left.add_trace(go.Scatter(x=[here[0]], y=[here[1]], mode="markers", name="θ at this step",
                              marker=dict(size=12, color=colour, line=dict(color="white", width=2))))
    left.update_xaxes(range=[x0, x1], title_text="x", constrain="domain")
    left.update_yaxes(range=[y0, y1], title_text="y", scaleanchor="x", scaleratio=1, constrain="domain")
    left.update_layout(height=height, margin=dict(l=10, r=10, t=10, b=10), legend=LEGEND_TOP)
    labels = ["m (x)", "m (y)", "√v (x)", "√v (y)"]
    rebuilt = [snapshot.m[0], snapshot.m[1], math.sqrt(snapshot.v[0]), math.sqrt(snapshot.v[1])]
    stored = [snapshot.stored_m[0], snapshot.stored_m[1], math.sqrt(snapshot.stored_v[0]),
              math.sqrt(snapshot.stored_v[1])]
    right = go.Figure()
    right.add_trace(go.Bar(x=labels, y=rebuilt, name=f"AdaMeZO: rebuilt from {len(snapshot.pairs)} (seed, c) pairs "
                           f"({human_bytes(snapshot.adamezo_bytes)})", marker_color=colour,
                           hovertemplate="%{x}: %{y:.6g}<extra>rebuilt</extra>"))
    right.add_trace(go.Bar(x=labels, y=stored, name=f"ZO-Adam: stored tensors ({human_bytes(snapshot.zo_adam_bytes)})",
                           marker_color=stored_colour, marker_pattern_shape="/",
                           hovertemplate="%{x}: %{y:.6g}<extra>stored</extra>"))
    right.update_yaxes(title_text="value", exponentformat="e")
    right.update_layout(barmode="group", height=height, margin=dict(l=10, r=10, t=10, b=10), legend=LEGEND_TOP)
    return left, right


def spsa_figures(draws: Sequence, *, colour: str = "#D55E00", height: int = 420) -> tuple[go.Figure, go.Figure]:
    """Lesson 7, two figures: every estimate c·z (a dot), the true gradient and the average estimate
    (arrows from the origin); and the error of the running average against the number of draws (log-log),
    with the √2/√n line it follows. ``draws``: ``landscapes.inside.SpsaDraws`` of one or more seeds (pooled)."""
    est = np.concatenate([d.estimates for d in draws])
    grad = np.asarray(draws[0].gradient, dtype=np.float64)
    mean = est.mean(axis=0)
    norm = float(np.linalg.norm(grad))
    left = go.Figure()
    left.add_trace(go.Scatter(x=_round(est[:, 0], 4), y=_round(est[:, 1], 4), mode="markers", name="one estimate c·z",
                              marker=dict(size=4, color=_rgba(colour, 0.35)),
                              hovertemplate="c·z = (%{x:.4g}, %{y:.4g})<extra></extra>"))
    for vec, name, col, dash in ((grad, "true gradient ∇f", "#000000", "solid"),
                                 (mean, "average estimate", colour, "dash")):
        left.add_trace(go.Scatter(x=[0, vec[0]], y=[0, vec[1]], mode="lines+markers", name=name,
                                  line=dict(color=col, width=3, dash=dash), marker=dict(size=[0, 10], color=col),
                                  hovertemplate=name + " = (%{x:.4g}, %{y:.4g})<extra></extra>"))
    lim = 1.1 * float(np.quantile(np.abs(est), 0.98))
    left.update_xaxes(range=[-lim, lim], title_text="∂f/∂x estimate", exponentformat="e")
    left.update_yaxes(range=[-lim, lim], title_text="∂f/∂y estimate", scaleanchor="x", scaleratio=1,
                      exponentformat="e")
    left.update_layout(height=height, margin=dict(l=10, r=10, t=10, b=10), legend=LEGEND_TOP)
    n = np.arange(1, len(est) + 1)
    running = np.cumsum(est, axis=0) / n[:, None]
    err = np.linalg.norm(running - grad, axis=1) / norm
    keep = np.unique(np.geomspace(1, len(est), 200).astype(int)) - 1
    right = go.Figure()
    right.add_trace(go.Scatter(x=n[keep], y=_round(err[keep]), mode="lines", name="error of the average",
                               line=dict(color=colour, width=2.5)))
    ref = math.sqrt(2) / np.sqrt(n[keep])
    right.add_trace(go.Scatter(x=n[keep], y=_round(ref), mode="lines", name="√2 / √n",
                               line=dict(color="#555555", width=2, dash="dot")))
    right.update_xaxes(title_text="number of estimates averaged (n)", **log_ticks(n[keep]))
    right.update_yaxes(title_text="|average − ∇f| / |∇f|", **log_ticks(np.concatenate([err[keep], ref])))
    right.update_layout(height=height, margin=dict(l=10, r=10, t=10, b=10), legend=LEGEND_TOP)
    return left, right


def memory_figure(rows: Sequence[dict], *, height: int = 400) -> go.Figure:
    """Bytes of optimizer state per optimizer and model size (log y, labelled in B / KB / MB / GB): rows
    of ``{"optimizer", "label", "params", "state_bytes"}``. No numbers on the bars (they would be
    unreadably small beside each other); the page's table gives them."""
    fig = go.Figure()
    sizes = sorted({r["params"] for r in rows})
    labels = [_param_text(s) for s in sizes]
    by_opt: dict[str, list[dict]] = {}
    for r in rows:
        by_opt.setdefault(r["optimizer"], []).append(r)
    values_all = []
    for name, rs in by_opt.items():
        style = style_for(name)
        values = {r["params"]: r["state_bytes"] for r in rs}
        y = [max(values.get(s, 0), 1) for s in sizes]
        values_all += y
        fig.add_trace(go.Bar(x=labels, y=y, name=rs[0]["label"], marker_color=style.colour,
                             marker_pattern_shape=_BAR_PATTERNS[slot_of(name) % len(_BAR_PATTERNS)],
                             customdata=[human_bytes(values.get(s, 0)) for s in sizes],
                             hovertemplate=rs[0]["label"] + "<br>%{x} parameters<br>%{customdata}<extra></extra>"))
    fig.update_yaxes(title_text="optimizer state (log)", **log_ticks(values_all, text=human_bytes))
    fig.update_xaxes(title_text="trainable parameters")
    fig.update_layout(barmode="group", height=height, margin=dict(l=10, r=10, t=20, b=10), legend=LEGEND_TOP)
    return fig


#: Bar fill patterns by colour slot, so bars differ by more than colour.
_BAR_PATTERNS = ("/", "", "x", "-", ".", "|", "+", "\\")


def _param_text(n: int) -> str:
    for unit, size in (("B", 10**9), ("M", 10**6), ("k", 10**3)):
        if n >= size:
            return f"{n / size:g}{unit}"
    return str(n)


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
def _mpl_paths(ax, surface: Surface, paths: Sequence[Path], upto: int | None, lw: float):
    """Draw ``paths`` on ``ax`` (white outline, line in the optimizer's colour and dash, head marker)."""
    from matplotlib import patheffects

    artists = []
    for p in paths:
        style = _style(p)
        xy = _display_xy(p.xy, surface.domain)
        n = len(xy) if upto is None else min(upto + 1, len(xy))
        (line,) = ax.plot(xy[:n, 0], xy[:n, 1], color=style.colour, lw=lw, ls=style.mpl_dash, label=p.label,
                          marker=style.mpl_marker, markevery=[n - 1], markersize=3.2 * lw + 4,
                          markeredgecolor="white", zorder=4,
                          path_effects=[patheffects.Stroke(linewidth=lw + 3, foreground="white"), patheffects.Normal()])
        artists.append(line)
        if p.diverged_at is not None and n == len(xy):
            ax.plot(xy[-1, 0], xy[-1, 1], "x", color="black", markersize=14, mew=3, zorder=5)
    return artists


def mpl_contour(surface: Surface, paths: Sequence[Path], *, upto: int | None = None, figsize=(19.2, 10.8),
                dpi=100, title: str | None = None):
    """The contour with the paths (up to step ``upto``) as a matplotlib figure for slides: 1920 × 1080 at
    the defaults, with a title, axis titles, a colour bar and a legend, in the app's greys and styles."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    scale = figsize[0] / 6.4
    fig = Figure(figsize=figsize, dpi=dpi)
    ax = fig.add_subplot(1, 1, 1)
    C = np.ma.masked_invalid(surface.C)
    if C.count():
        cs = ax.contourf(surface.xs, surface.ys, C, levels=30, cmap=_greys_cmap())
        ax.contour(surface.xs, surface.ys, C, levels=30, colors="#3c3c3c", linewidths=0.3 * scale, alpha=0.35)
        bar = fig.colorbar(cs, ax=ax, shrink=0.9)
        bar.set_label("log10(f − f_min)" if surface.log else "f", fontsize=10 * scale)
        bar.ax.tick_params(labelsize=8 * scale)
    for m in surface.minima:
        ax.plot(m[0], m[1], marker="*", color="white", markeredgecolor="black", markersize=9 * scale, zorder=5)
    _mpl_paths(ax, surface, paths, upto, lw=1.2 * scale)
    (x0, x1), (y0, y1) = surface.domain
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_aspect("equal")
    ax.set_xlabel("x", fontsize=10 * scale)
    ax.set_ylabel("y", fontsize=10 * scale)
    ax.tick_params(labelsize=8 * scale)
    ax.set_title(title or surface.title, fontsize=12 * scale)
    if paths:
        ax.legend(loc="upper left", bbox_to_anchor=(1.25, 1.0), fontsize=9 * scale, frameon=False)
    fig.tight_layout()
    return fig


def png_bytes(fig) -> bytes:
    """A matplotlib figure as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _animation(surface: Surface, paths: Sequence[Path], frames: int, align: str, figsize, dpi):
    from matplotlib.animation import FuncAnimation

    fig = mpl_contour(surface, [], figsize=figsize, dpi=dpi)
    ax = fig.axes[0]
    scale = figsize[0] / 6.4
    steps = frame_steps(_clock_end(paths, align), frames)
    label = ax.text(0.02, 0.97, "", transform=ax.transAxes, color="black", fontsize=9 * scale, va="top",
                    bbox=dict(facecolor="white", alpha=0.8, edgecolor="none"))
    drawn: list = []
    if paths:
        handles = _mpl_paths(ax, surface, paths, 0, lw=1.2 * scale)
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.25, 1.0), fontsize=9 * scale, frameon=False)
        for h in handles:
            h.remove()

    def draw(k: int):
        for a in drawn:
            a.remove()
        drawn.clear()
        s = steps[k]
        upto = {id(p): _head_at(p, s, align) for p in paths}
        for p in paths:
            drawn.extend(_mpl_paths(ax, surface, [p], upto[id(p)], lw=1.2 * scale))
        label.set_text(f"forward passes {s}" if align == "forward_passes" else f"step {s}")
        return [*drawn, label]

    return fig, FuncAnimation(fig, draw, frames=len(steps), blit=False)


def gif_bytes(surface: Surface, paths: Sequence[Path], *, frames: int = 40, fps: int = 10, figsize=(9.6, 5.4),
              dpi: int = 100, align: str = "step") -> bytes:
    """The animation as a GIF, 960 × 540 at the defaults, with the PNG's look: the paths grow with their
    heads (matplotlib's FuncAnimation and PillowWriter)."""
    from matplotlib.animation import PillowWriter

    _, anim = _animation(surface, paths, frames, align, figsize, dpi)
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "animation.gif")
        anim.save(out, writer=PillowWriter(fps=fps))
        with open(out, "rb") as fh:
            return fh.read()


def mp4_bytes(surface: Surface, paths: Sequence[Path], *, frames: int = 80, fps: int = 20, figsize=(19.2, 10.8),
              dpi: int = 100, align: str = "step") -> bytes:
    """The animation as an H.264 MP4, 1920 × 1080 at the defaults (matplotlib's FFMpegWriter with the
    ffmpeg that the ``imageio-ffmpeg`` package ships)."""
    import imageio_ffmpeg
    import matplotlib
    from matplotlib.animation import FFMpegWriter

    matplotlib.rcParams["animation.ffmpeg_path"] = imageio_ffmpeg.get_ffmpeg_exe()
    _, anim = _animation(surface, paths, frames, align, figsize, dpi)
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "animation.mp4")
        anim.save(out, writer=FFMpegWriter(fps=fps, codec="libx264", extra_args=["-pix_fmt", "yuv420p"]))
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
