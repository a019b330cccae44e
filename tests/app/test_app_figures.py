"""The pure figure builders: traces, frames, sizes, exports."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import plotly.io as pio
import pytest

from conftest import decode
from app import figures as F


def make_surface(n=60, log=True):
    xs = np.linspace(-2, 2, n)
    ys = np.linspace(-1, 3, n)
    X, Y = np.meshgrid(xs, ys)
    Z = (1 - X) ** 2 + 100 * (Y - X * X) ** 2
    C = np.log10(Z + 1e-6) if log else Z
    return F.Surface(xs, ys, Z, C, log, "Rosenbrock", [(1.0, 1.0, 0.0)], (-1.5, 2.0))


def make_path(label="MeZO", steps=500, per_step=2, diverged_at=None, seed=0):
    rng = np.random.default_rng(seed)
    xy = np.cumsum(rng.normal(0, 0.01, size=(steps + 1, 2)), axis=0) + [-1.5, 2.0]
    loss = (1 - xy[:, 0]) ** 2 + 100 * (xy[:, 1] - xy[:, 0] ** 2) ** 2
    return F.Path(label, F.colour_for(label.lower()), xy, loss, np.arange(steps + 1) * per_step, diverged_at)


def make_named(name, **kw):
    from optimizers import OPTIMIZERS

    p = make_path(OPTIMIZERS[name].title, **kw)
    p.colour = F.colour_for(name)
    p.extra["name"] = name
    return p


def test_contour_holds_each_path_once_with_the_players_tracks():
    names = ["mezo", "adamezo", "adam"]
    paths = [make_named(n, seed=i, per_step=1 if n == "adam" else 2) for i, n in enumerate(names)]
    fig = F.contour_figure(make_surface(), paths, channel="playground")
    # The landscape is a background image under a colour-bar-only trace.
    assert fig.layout.images[0].source.startswith("data:image/png;base64,")
    assert fig.layout.images[0].xref == "x" and fig.layout.images[0].sizex == pytest.approx(4.0)
    assert fig.data[0].name == "landscape" and fig.data[0].marker.showscale is True
    assert not fig.frames and not fig.layout.updatemenus and not fig.layout.sliders  # the browser animates
    meta = fig.layout.meta
    assert meta["zo_channel"] == "playground"
    player = meta["zo_player"]
    assert player["clock_end"] == 500 and player["label"] == "step"
    tracks = player["tracks"]
    assert [t["mode"] for t in tracks] == ["trail", "trail", "head"] * 3
    for k, p in enumerate(paths):
        outline, line, head = (fig.data[t["trace"]] for t in tracks[3 * k:3 * k + 3])
        assert tracks[3 * k]["source"] == tracks[3 * k + 1]["trace"] == tracks[3 * k + 2]["source"]
        assert line.name == p.label and outline.line.color.startswith("rgba(255,255,255")
        assert len(line.x) == 501 and tracks[3 * k]["t"] is None  # every step, clock = index
        # Sent at its last step: the whole trail, the head at the end.
        assert head.x[0] == pytest.approx(p.xy[-1, 0], rel=1e-4) and head.y[0] == pytest.approx(p.xy[-1, 1], rel=1e-4)
        style = F.style_for(names[k])
        assert line.line.color == style.colour and line.line.dash == style.dash
        assert head.marker.symbol == style.marker
    legend = [t for t in fig.data if t.showlegend is not False and t.name in {p.label for p in paths}]
    assert [t.mode for t in legend] == ["lines+markers"] * 3  # the legend shows dash and marker together


def test_figure_json_stays_under_2_mb():
    paths = [make_named(n, seed=i) for i, n in enumerate(["mezo", "adamezo", "adam"])]
    plain = F.contour_figure_dict(make_surface(120), paths)
    assert len(pio.to_json(plain, validate=False)) < 300_000  # each path once, no frames
    # Six optimizers and 5000 steps: paths are drawn with at most 2500 points each.
    many = [make_named(n, steps=5000, seed=i) for i, n in enumerate(["mezo", "adamezo", "zo-adam", "hizoo", "adam",
                                                                     "adamw"])]
    big = F.contour_figure_dict(make_surface(120), many)
    assert len(pio.to_json(big, validate=False)) < 2_000_000
    t = big["layout"]["meta"]["zo_player"]["tracks"][0]["t"]
    assert len(t) == 2500 and t[0] == 0 and t[-1] == 5000  # the clock of each drawn point
    fig3 = F.surface_figure(make_surface(50), many, channel="playground")
    assert len(fig3.to_json()) < 2_000_000
    assert fig3.layout.meta["zo_channel"] == "playground" and fig3.layout.meta["zo_follow"]["tracks"]
    assert fig3.layout.scene.camera.eye.z > 1  # seen from above: the paths are in front of the surface
    assert len(F.loss_figure(many, 0.0).to_json()) < 2_000_000


def test_divergence_is_marked_with_an_end_marker():
    p = make_path("MeZO", steps=40, diverged_at=41)
    fig = F.contour_figure(make_surface(), [p, make_path("Adam", steps=40, seed=3)])
    marker = next(t for t in fig.data if t.name == "diverged")
    assert list(marker.x) == [pytest.approx(p.xy[-1, 0], rel=1e-4)]
    assert "diverged at step 41" in marker.hovertext[0]
    loss = F.loss_figure([p], f_min=0.0)
    assert any(t.name == "MeZO diverged" for t in loss.data)


def test_budget_alignment_runs_the_clock_in_forward_passes():
    zo = make_path("MeZO", steps=100, per_step=2)
    fo = make_path("Adam", steps=200, per_step=1, seed=1)
    fig = F.contour_figure(make_surface(), [zo, fo], align="forward_passes")
    player = fig.layout.meta["zo_player"]
    assert player["clock_end"] == 200 and player["label"] == "forward passes"
    # MeZO's points are at 0, 2, 4 … forward passes, Adam's at 0, 1, 2 …: at clock 100, step 50 and 100.
    assert player["tracks"][0]["t"][:3] == [0, 2, 4] and player["tracks"][3]["t"][:3] == [0, 1, 2]
    loss = F.loss_figure([zo, fo], 0.0, align="forward_passes")
    cursor = loss.layout.meta["zo_follow"]["tracks"]
    assert cursor[0]["t"][50] == 100 and cursor[1]["t"][100] == 100


def test_loss_figure_uses_log_gap_bands_cursor_and_a_capped_axis():
    p = make_named("adamezo", steps=50)
    p.median, p.lower, p.upper = p.loss, p.loss * 0.5, p.loss * 2
    fig = F.loss_figure([p], f_min=0.0, channel="c")
    assert fig.layout.yaxis.type == "log"
    band = next(t for t in fig.data if t.name == "AdaMeZO band")
    assert band.fill == "toself" and len(band.x) == 2 * 51
    line = next(t for t in fig.data if t.name == "AdaMeZO")
    assert list(line.x) == list(range(0, 102, 2))  # forward passes on x
    cursor = next(t for t in fig.data if t.name == "AdaMeZO (now)")
    assert cursor.marker.symbol == F.style_for("adamezo").marker
    assert fig.layout.meta == {"zo_channel": "c", "zo_follow": {"tracks": [
        {"trace": 2, "source": 1, "mode": "head", "t": list(range(51))}]}}
    # Powers of ten only, in plain or scientific notation.
    assert all(text in ("1e-6", "1e-5", "1e-4", "0.001", "0.01", "0.1", "1", "10", "100", "1000", "1e4", "1e5")
               or text[0] in "25" for text in fig.layout.yaxis.ticktext)
    # A run that blew up does not flatten the others: the axis stops at 10⁴ × the largest start.
    boom = make_named("mezo", steps=50, seed=4)
    boom.loss = boom.loss.copy()
    boom.loss[-10:] = 1e120
    capped = F.loss_figure([p, boom], f_min=0.0)
    assert capped.layout.yaxis.range[1] < np.log10(1e4 * max(p.loss[0], boom.loss[0])) + 0.2
    # Negative values without a known minimum: a linear axis, never a broken log axis.
    neg = F.Path("x", "#000", p.xy, p.loss - 1e6, p.forward_passes)
    assert F.loss_figure([neg], f_min=None).layout.yaxis.type == "linear"


def test_small_multiples_one_panel_per_value():
    surf = make_surface(30)
    panels = [(f"beta1 = {b}", [make_path("s", steps=20, seed=s) for s in range(3)]) for b in (0, 0.5, 0.9)]
    fig = F.small_multiples(surf, panels, ncols=3)
    assert sum(t.type == "contour" for t in fig.data) == 3
    assert [a.text for a in fig.layout.annotations] == ["beta1 = 0", "beta1 = 0.5", "beta1 = 0.9"]
    assert all(a.font.size is None for a in fig.layout.annotations)  # the page's chart font size
    lines = [t for t in fig.data if t.type == "scatter" and t.mode == "lines"]
    assert len(lines) == 2 * 9 and sum(t.name.endswith("(outline)") for t in lines) == 9


def test_exports_for_slides():
    from PIL import Image

    surf = make_surface(40)
    paths = [make_named("mezo", steps=30), make_named("adam", steps=30, seed=1)]
    png = F.png_bytes(F.mpl_contour(surf, paths))
    assert Image.open(io.BytesIO(png)).size == (1920, 1080)
    ax = F.mpl_contour(surf, paths).axes[0]
    assert ax.get_title() == "Rosenbrock" and ax.get_xlabel() == "x" and ax.get_ylabel() == "y"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["MeZO", "Adam (first order)"]
    line = next(ln for ln in ax.get_lines() if ln.get_label() == "MeZO")
    assert line.get_color() == F.style_for("mezo").colour and line.get_marker() == F.style_for("mezo").mpl_marker
    gif = F.gif_bytes(surf, paths, frames=5)
    image = Image.open(io.BytesIO(gif))
    assert image.n_frames == 5 and image.size[0] >= 960
    mp4 = F.mp4_bytes(surf, paths, frames=4, figsize=(6.4, 3.6))
    assert mp4[4:8] == b"ftyp" and len(mp4) > 1000
    lines = F.trajectories_csv(paths).splitlines()
    assert lines[0] == "optimizer,seed,step,x,y,loss,forward_passes,diverged_at"
    assert len(lines) == 1 + 2 * 31
    assert lines[1].startswith("MeZO,,0,")
    paths[0].label = "lr = 0.01, K = 3"  # a label with a comma stays one field
    rows = list(csv.reader(F.trajectories_csv(paths).splitlines()))
    assert rows[1][0] == "lr = 0.01, K = 3" and float(rows[1][3]) == paths[0].xy[0, 0]
    assert {len(r) for r in rows} == {8}


def test_palette_survives_colour_blindness():
    """Every pair of optimizer colours stays apart (CIEDE2000 >= 10) under simulated deuteranopia,
    protanopia and tritanopia (colorspacious, full severity), or the two differ in dash and marker."""
    from colorspacious import cspace_convert, deltaE

    from optimizers import OPTIMIZERS

    styles = {n: F.style_for(n) for n in OPTIMIZERS}
    assert len({s.colour for s in styles.values()}) == len(styles)  # one colour each
    rgb = {n: np.array([int(s.colour[i:i + 2], 16) for i in (1, 3, 5)]) / 255 for n, s in styles.items()}
    close = []
    for cvd in ("deuteranomaly", "protanomaly", "tritanomaly"):
        space = {"name": "sRGB1+CVD", "cvd_type": cvd, "severity": 100}
        seen = {n: np.clip(cspace_convert(c, space, "sRGB1"), 0, 1) for n, c in rgb.items()}
        names = list(seen)
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                d = deltaE(seen[a], seen[b], input_space="sRGB1", uniform_space="CIELab")
                if d < 10:
                    close.append((cvd, a, b, round(float(d), 1)))
                    assert styles[a].dash != styles[b].dash and styles[a].marker != styles[b].marker, (cvd, a, b, d)
    # Against the landscape's greys too: every optimizer colour differs from every grey of the contour.
    greys = [np.array([int(g[i:i + 2], 16) for i in (1, 3, 5)]) / 255 for g in F.GREYS]
    for n, c in rgb.items():
        for g in greys + [(greys[0] + greys[1]) / 2]:
            assert deltaE(c, g, input_space="sRGB1", uniform_space="CIELab") >= 20, n
    print("pairs closer than 10 under a deficiency (told apart by dash and marker):", close)


def test_every_builder_draws_an_optimizer_in_its_own_style():
    names = ["mezo", "adamezo", "adam"]
    paths = [make_named(n, seed=i) for i, n in enumerate(names)]
    surf = make_surface(40)
    contour = F.contour_figure(surf, paths)
    loss = F.loss_figure(paths, 0.0)
    fig3 = F.surface_figure(surf, paths)
    memory = F.memory_figure([{"optimizer": n, "label": n, "params": 10, "state_bytes": 80} for n in names])
    for n, p in zip(names, paths):
        style = F.style_for(n)
        assert next(t for t in contour.data if t.name == p.label).line.color == style.colour
        assert next(t for t in loss.data if t.name == p.label).line.dash == style.dash
        assert next(t for t in fig3.data if t.name == p.label).line.color == style.colour
        assert next(t for t in memory.data if t.name == n).marker.color == style.colour
    sweep = F.sweep_colours(8)
    assert len(set(sweep)) == 8 and OKABE_YELLOW not in sweep and not set(sweep) & set(F.GREYS)


OKABE_YELLOW = F.OKABE_ITO["yellow"]


def test_records_csv_has_every_field_and_blanks_where_a_record_lacks_one():
    records = [{"step": 0, "train_loss": 0.5, "eval_accuracy": 0.66}, {"step": 1, "train_loss": 0.25}]
    rows = list(csv.DictReader(F.records_csv(records).splitlines()))
    assert list(rows[0]) == ["eval_accuracy", "step", "train_loss"]
    assert rows == [{"eval_accuracy": "0.66", "step": "0", "train_loss": "0.5"},
                    {"eval_accuracy": "", "step": "1", "train_loss": "0.25"}]


def test_helpers():
    assert F.frame_steps(500) == sorted(set(F.frame_steps(500)))
    assert F.frame_steps(500)[0] == 0 and F.frame_steps(500)[-1] == 500 and len(F.frame_steps(500)) == 100
    assert F.frame_steps(5) == [0, 1, 2, 3, 4, 5]
    assert F.frame_steps(0) == [0]
    xy = np.array([[0.0, 0.0], [1.0, 1.0], [50.0, 0.0]])
    assert F.escaped_at(xy, ((-2, 2), (-2, 2))) == 2
    assert F.human_bytes(16) == "16 B" and F.human_bytes(3e9) == "3 GB" and F.human_bytes(800_004) == "800 KB"
    assert [F.number_text(v) for v in (1e-6, 0.00123, 0.5, 42, 12345, 1.43e32, float("inf"))] == [
        "1e-6", "0.00123", "0.5", "42", "1.23e4", "1.43e32", "∞"]
    ticks = F.log_ticks([3e-9, 40.0])
    assert ticks["ticktext"] == ["1e-9", "1e-7", "1e-5", "0.001", "0.1", "10"]  # powers of ten only
    assert F.log_ticks([2.0, 30.0])["ticktext"] == ["1", "2", "5", "10", "20", "50", "100"]
    fig = F.memory_figure([{"optimizer": "adam", "label": "Adam", "params": 10, "state_bytes": 80}])
    assert list(fig.data[0].y) == [80] and "80 B" in fig.layout.yaxis.ticktext or "100 B" in fig.layout.yaxis.ticktext
    grid = F.small_multiples(make_surface(10), [("a", [make_path(steps=3)])])
    decoded = decode(json.loads(grid.to_json())["data"][0]["z"])
    assert decoded.shape == (10, 10)
    import base64
    from PIL import Image
    png = base64.b64decode(F.contour_image(make_surface(30), pixels=200).split(",", 1)[1])
    assert Image.open(io.BytesIO(png)).size == (200, 200)  # the Rosenbrock domain is 4 × 4
    assert Image.open(io.BytesIO(base64.b64decode(F.contour_image(F.Surface(
        np.linspace(-1e6, 1e6, 5), np.linspace(-1, 1, 5), np.zeros((5, 5)), np.zeros((5, 5)), False),
        pixels=100).split(",", 1)[1]))).size[1] >= 2  # an elongated domain still draws


def test_metrics_markdown_table_formats_and_escapes():
    from app.compute import markdown_table

    rows = [{"optimizer": "MeZO", "lr": 0.002, "final loss": 1.0380553e118, "steps": 500, "diverged at": "—"},
            {"optimizer": "a|b", "lr": None, "final loss": float("nan"), "steps": 1, "diverged at": 3}]
    lines = markdown_table(rows).splitlines()
    assert lines[0] == "| optimizer | lr | final loss | steps | diverged at |" and lines[1] == "|---|---|---|---|---|"
    assert lines[2] == "| MeZO | 0.002 | 1.04e118 | 500 | — |"
    assert lines[3] == "| a\\|b | — | — | 1 | 3 |"  # a pipe in a label does not open a column
    assert markdown_table([]) == ""
