"""The pure figure builders: traces, frames, sizes, exports."""

from __future__ import annotations

import csv
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


def test_frames_carry_only_the_animated_heads_by_index():
    paths = [make_path("MeZO"), make_path("AdaMeZO", seed=1), make_path("Adam", per_step=1, seed=2)]
    fig = F.contour_animation(make_surface(), paths)
    # The landscape is a background image (never touched by frames) under a colour-bar-only trace.
    assert fig.layout.images[0].source.startswith("data:image/png;base64,")
    assert fig.layout.images[0].xref == "x" and fig.layout.images[0].sizex == pytest.approx(4.0)
    assert fig.data[0].name == "landscape" and fig.data[0].marker.showscale is True
    assert all(t.type == "scatter" for t in fig.data)
    assert len(fig.frames) == 100  # 501 steps subsampled to at most 100 frames
    animated = list(fig.frames[0].traces)
    assert 0 not in animated  # the contour is never replaced: it survives play with redraw False
    assert animated == list(range(len(fig.data) - 6, len(fig.data)))  # head + trail per path
    for frame in fig.frames:
        assert list(frame.traces) == animated
        assert all(d.type == "scatter" for d in frame.data)
    # The last frame's heads are the paths' final points; frame names are step numbers.
    last = fig.frames[-1]
    assert last.name == "500"
    for k, p in enumerate(paths):
        assert last.data[2 * k].x[0] == pytest.approx(p.xy[-1, 0], rel=1e-4)
        assert last.data[2 * k].y[0] == pytest.approx(p.xy[-1, 1], rel=1e-4)
    # Play/pause use redraw False, and the slider has one step per frame.
    play, pause = fig.layout.updatemenus[0].buttons
    assert play.args[1]["frame"]["redraw"] is False
    assert list(pause.args[0]) == [None]
    assert len(fig.layout.sliders[0].steps) == 100


def test_figure_json_stays_under_2_mb_with_three_optimizers_and_500_steps():
    paths = [make_path(n, seed=i) for i, n in enumerate(["MeZO", "AdaMeZO", "Adam"])]
    fig = F.contour_animation(make_surface(120), paths)
    size = len(fig.to_json())
    assert size < 2_000_000
    # What the app sends: the same figure as a plain dict, without Plotly's typed arrays.
    plain = F.contour_animation_dict(make_surface(120), paths)
    assert len(pio.to_json(plain, validate=False)) < 2_000_000
    fig3 = F.surface_animation(make_surface(50), paths)
    assert len(fig3.to_json()) < 2_000_000
    assert len(fig3.frames) == 60
    assert fig3.layout.updatemenus[0].buttons[0].args[1]["frame"]["redraw"] is True
    assert all(0 not in fr.traces for fr in fig3.frames)


def test_divergence_is_marked_with_an_end_marker():
    p = make_path("MeZO", steps=40, diverged_at=41)
    fig = F.contour_animation(make_surface(), [p, make_path("Adam", steps=40, seed=3)])
    marker = next(t for t in fig.data if t.name == "diverged")
    assert list(marker.x) == [pytest.approx(p.xy[-1, 0], rel=1e-4)]
    assert "diverged at step 41" in marker.hovertext[0]
    loss = F.loss_figure([p], f_min=0.0)
    assert any(t.name == "MeZO diverged" for t in loss.data)


def test_budget_alignment_moves_heads_by_forward_passes():
    zo = make_path("MeZO", steps=100, per_step=2)
    fo = make_path("Adam", steps=200, per_step=1, seed=1)
    fig = F.contour_animation(make_surface(), [zo, fo], align="forward_passes", max_frames=21)
    assert fig.frames[-1].name == "200"
    mid = next(fr for fr in fig.frames if fr.name == "100")
    # At 100 forward passes MeZO has made 50 steps and Adam 100.
    assert mid.data[0].x[0] == pytest.approx(zo.xy[50, 0], rel=1e-4)
    assert mid.data[2].x[0] == pytest.approx(fo.xy[100, 0], rel=1e-4)


def test_loss_figure_uses_log_gap_and_draws_bands():
    p = make_path("AdaMeZO", steps=50)
    p.median, p.lower, p.upper = p.loss, p.loss * 0.5, p.loss * 2
    fig = F.loss_figure([p], f_min=0.0)
    assert fig.layout.yaxis.type == "log"
    band = next(t for t in fig.data if t.name == "AdaMeZO band")
    assert band.fill == "toself" and len(band.x) == 2 * 51
    line = next(t for t in fig.data if t.name == "AdaMeZO")
    assert list(line.x) == list(range(0, 102, 2))  # forward passes on x
    # Negative values without a known minimum: a linear axis, never a broken log axis.
    neg = F.Path("x", "#000", p.xy, p.loss - 1e6, p.forward_passes)
    assert F.loss_figure([neg], f_min=None).layout.yaxis.type == "linear"


def test_small_multiples_one_panel_per_value():
    surf = make_surface(30)
    panels = [(f"beta1 = {b}", [make_path("s", steps=20, seed=s) for s in range(3)]) for b in (0, 0.5, 0.9)]
    fig = F.small_multiples(surf, panels, ncols=3)
    assert sum(t.type == "contour" for t in fig.data) == 3
    assert [a.text for a in fig.layout.annotations] == ["beta1 = 0", "beta1 = 0.5", "beta1 = 0.9"]
    assert sum(t.type == "scatter" and t.mode == "lines" for t in fig.data) == 9


def test_exports_png_gif_csv():
    surf = make_surface(40)
    paths = [make_path("MeZO", steps=30), make_path("Adam", steps=30, seed=1)]
    png = F.png_bytes(F.mpl_contour(surf, paths))
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    gif = F.gif_bytes(surf, paths, frames=5, dpi=40)
    assert gif[:6] in (b"GIF89a", b"GIF87a")
    from PIL import Image
    import io
    assert Image.open(io.BytesIO(gif)).n_frames == 5
    lines = F.trajectories_csv(paths).splitlines()
    assert lines[0] == "optimizer,seed,step,x,y,loss,forward_passes,diverged_at"
    assert len(lines) == 1 + 2 * 31
    assert lines[1].startswith("MeZO,,0,")
    paths[0].label = "lr = 0.01, K = 3"  # a label with a comma stays one field
    rows = list(csv.reader(F.trajectories_csv(paths).splitlines()))
    assert rows[1][0] == "lr = 0.01, K = 3" and float(rows[1][3]) == paths[0].xy[0, 0]
    assert {len(r) for r in rows} == {8}


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
    assert F.human_bytes(16) == "16 B" and F.human_bytes(3 * 1024**3) == "3 GiB"
    fig = F.memory_figure([{"optimizer": "adam", "label": "Adam", "params": 10, "state_bytes": 80, "colour": "#000"}])
    assert list(fig.data[0].y) == [80]
    decoded = decode(json.loads(F.small_multiples(make_surface(10), [("a", [make_path(steps=3)])]).to_json())["data"][0]["z"])
    assert decoded.shape == (10, 10)
    import base64, io
    from PIL import Image
    png = base64.b64decode(F.contour_image(make_surface(30), pixels=200).split(",", 1)[1])
    assert Image.open(io.BytesIO(png)).size == (200, 200)  # the Rosenbrock domain is 4 × 4


def test_metrics_markdown_table_formats_and_escapes():
    from app.compute import markdown_table

    rows = [{"optimizer": "MeZO", "lr": 0.002, "final loss": 1.0380553e118, "steps": 500, "diverged at": "—"},
            {"optimizer": "a|b", "lr": None, "final loss": float("nan"), "steps": 1, "diverged at": 3}]
    lines = markdown_table(rows).splitlines()
    assert lines[0] == "| optimizer | lr | final loss | steps | diverged at |" and lines[1] == "|---|---|---|---|---|"
    assert lines[2] == "| MeZO | 0.002 | 1.038e+118 | 500 | — |"
    assert lines[3] == "| a\\|b | — | — | 1 | 3 |"  # a pipe in a label does not open a column
    assert markdown_table([]) == ""
