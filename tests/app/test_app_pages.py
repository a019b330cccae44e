"""Every page under AppTest, with default and edge settings: figure data, tables, URL and messages."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import landscapes
from conftest import chart_titles, charts, decode, metrics_table, open_page, ranking_table, tables, text

from app import lessons as lessons_mod  # noqa: E402
from app.figures import number_text  # noqa: E402
from app.presets import DEMO_HYPER  # noqa: E402
from llm_demo.finetune import DEMO_DEFAULTS  # noqa: E402
from optimizers import OPTIMIZERS  # noqa: E402

DEMO_LR = DEMO_DEFAULTS["adamezo"].get("lr", OPTIMIZERS["adamezo"].specs["lr"].default)
PLAY = "app_pages/playground.py"
COMPARE = "app_pages/compare.py"
LESSONS = "app_pages/lessons.py"
LLM = "app_pages/llm.py"
LESSON_LIST = lessons_mod.LESSONS
LESSON_BY_SLUG = lessons_mod.LESSONS_BY_SLUG


def no_crash(at):
    assert [e.value for e in at.exception] == []


def contour_spec(at) -> dict:
    spec = charts(at)[0]
    assert spec["layout"]["images"][0]["source"].startswith("data:image/png;base64,")
    assert spec["data"][0]["name"] == "landscape"
    return spec


def path_traces(spec) -> dict:
    """The contour's path lines by label (not their white outlines, heads or legend entries)."""
    return {t["name"]: t for t in spec["data"] if t.get("mode") == "lines"
            and not t["name"].endswith((" (now)", " (outline)"))}


# --------------------------------------------------------------------------------- playground
def test_playground_default_is_lesson_1_and_matches_the_library():
    """The landing view is lesson 1's setting (the paper's protocol), with its rule-derived lrs: the first
    thing a teacher sees is AdaMeZO ending far below MeZO, as the lesson claims."""
    at = open_page(None, {"surface3d": "1"})
    no_crash(at)
    assert [text(e) for e in at.error] == [] and [text(w) for w in at.warning] == []
    spec = contour_spec(at)
    paths = path_traces(spec)
    assert list(paths) == ["Adam (first order)", "MeZO", "AdaMeZO"]
    player = spec["layout"]["meta"]["zo_player"]
    assert player["clock_end"] == 1000 and len(player["tracks"]) == 9  # outline, line and head of each path
    assert "frames" not in spec or not spec["frames"]  # the browser animates; each path is sent once
    assert len(json.dumps(spec)) < 2_000_000
    # The shown path is the library's trajectory for the default setting.
    lr = lessons_mod.stored_lrs()["paper"]["adamezo"]["lr"]
    ref = landscapes.run_trajectory("rosenbrock", "adamezo", 1000, {"lr": lr}, seed=0)
    xs = decode(paths["AdaMeZO"]["x"]).astype(float)
    assert len(xs) == 1001
    assert xs[-1] == pytest.approx(ref.xy[-1, 0], rel=1e-4)
    table = {r["optimizer"]: r for r in metrics_table(at)}
    assert list(table) == ["Adam (first order)", "MeZO", "AdaMeZO"]
    row = table["AdaMeZO"]
    assert float(row["final loss"]) == pytest.approx(ref.final_loss, rel=1e-3)  # shown to 4 digits
    assert row["forward passes"] == "2000" and float(row["path length"]) == pytest.approx(ref.path_length, rel=1e-3)
    assert row["diverged at"] == "—" and row["diverged runs"] == "0/8"
    # Lesson 1's claim, on the landing view's own numbers.
    assert float(table["MeZO"]["median final loss (seeds)"]) >= 10 * float(row["median final loss (seeds)"])
    # The URL holds the full setting.
    qp = at.query_params
    assert qp["view"] == "playground" and qp["opts"] == "adam,mezo,adamezo" and qp["adamezo.beta1"] == "0.7"
    assert qp["budget"] == "none" and qp["repeats"] == "8" and float(qp["adamezo.lr"]) == lr
    # Loss plot: log axis, x = forward passes, a cursor that follows the contour's player.
    loss = charts(at)[1]
    assert loss["layout"]["yaxis"]["type"] == "log"
    assert loss["layout"]["meta"]["zo_channel"] == spec["layout"]["meta"]["zo_channel"] == "playground"
    assert len(loss["layout"]["meta"]["zo_follow"]["tracks"]) == 3
    # The 3-D surface follows the same clock.
    surf = charts(at)[2]
    assert surf["data"][0]["type"] == "surface" and surf["layout"]["meta"]["zo_channel"] == "playground"


def test_playground_edge_setting_one_step_repeats_and_changing_a_control():
    at = open_page(PLAY, {"view": "playground", "opts": "adamezo", "steps": "1", "repeats": "3", "ls": "quadratic",
                          "kappa": "1000", "angle": "30", "budget": "2", "x0": "1", "y0": "-1"})
    no_crash(at)
    spec = contour_spec(at)
    assert spec["layout"]["meta"]["zo_player"]["clock_end"] == 1
    start = next(t for t in spec["data"] if t["name"] == "start")
    assert (start["x"][0], start["y"][0]) == (1.0, -1.0)
    table = metrics_table(at)
    assert table[0]["steps"] == "1" and table[0]["diverged runs"] == "0/3"
    assert "κ = 1000, 30°" in chart_titles(at)[0]
    # Changing a control re-runs and rewrites the URL.
    at.select_slider(key="playground:adamezo.lr").set_value(0.1).run()
    no_crash(at)
    assert at.query_params["adamezo.lr"] == "0.1"
    assert float(metrics_table(at)[0]["lr"]) == pytest.approx(0.1)


def test_playground_first_order_run_is_computed_once_for_every_seed(monkeypatch):
    """Adam draws no random directions: a new seed (or more repeats) re-runs only the ZO optimizers,
    and Adam's path and metrics are the same run, labelled with the seed asked for."""
    from app import compute

    compute.RUNS.clear()
    calls = []
    real = landscapes.run_trajectory
    monkeypatch.setattr(landscapes, "run_trajectory",
                        lambda *a, **k: (a[2] == 30 and calls.append((a[1], k["seed"]))) or real(*a, **k))
    at = open_page(PLAY, {"view": "playground", "opts": "mezo,adam", "steps": "30", "ls": "booth", "seed": "4",
                          "repeats": "1"})
    no_crash(at)
    first = path_traces(contour_spec(at))
    assert sorted(calls) == [("adam", 0), ("mezo", 4)]
    at.number_input(key="playground:seed").set_value(5).run()
    at.slider(key="playground:repeats").set_value(3).run()
    no_crash(at)
    assert sorted(calls) == [("adam", 0), ("mezo", 4), ("mezo", 5), ("mezo", 6), ("mezo", 7)]
    after = path_traces(contour_spec(at))
    assert np.array_equal(decode(after["Adam (first order)"]["x"]), decode(first["Adam (first order)"]["x"]))
    assert not np.array_equal(decode(after["MeZO"]["x"]), decode(first["MeZO"]["x"]))
    assert metrics_table(at)[1]["diverged runs"] == "0/3"


def test_playground_bad_link_values_warn_and_fall_back():
    at = open_page(PLAY, {"view": "playground", "steps": "abc", "adamezo.beta1": "1.5", "opts": "mezo,nope",
                          "ls": "atlantis"})
    no_crash(at)
    warnings = "\n".join(text(w) for w in at.warning)
    assert "steps='abc' is not an integer" in warnings and "Using steps=1000 instead" in warnings
    assert "invalid beta1=1.5 (too large); allowed: a number >= 0 and < 1" in warnings
    assert "unknown value 'nope'" in warnings and "ls='atlantis' is not a known option" in warnings
    assert at.slider(key="playground:adamezo.beta1").value == 0.7
    assert at.query_params["steps"] == "1000" and at.query_params["ls"] == "rosenbrock"
    assert len(path_traces(contour_spec(at))) == 3


def test_playground_custom_formula_good_and_bad():
    at = open_page(PLAY, {"view": "playground", "ls": "custom", "expr": "x**2 + 10*y**2", "opts": "mezo",
                          "steps": "20"})
    no_crash(at)
    spec = contour_spec(at)
    assert spec["layout"]["images"][0]["sizex"] == pytest.approx(6.0)  # the default custom domain
    # The run is on the typed formula: the final loss in the table is f at the path's end.
    path = path_traces(spec)["MeZO"]
    x, y = decode(path["x"]).astype(float)[-1], decode(path["y"]).astype(float)[-1]
    assert float(metrics_table(at)[0]["final loss"]) == pytest.approx(x ** 2 + 10 * y ** 2, rel=1e-3, abs=1e-4)
    at = open_page(PLAY, {"view": "playground", "ls": "custom", "expr": "__import__('os').system('true')",
                          "opts": "mezo", "steps": "20"})
    no_crash(at)
    errors = [text(e) for e in at.error]
    assert len(errors) == 1 and errors[0].startswith("The landscape could not be built: invalid formula")
    assert charts(at) == []


def test_playground_divergence_is_a_marked_end_and_a_message():
    at = open_page(PLAY, {"view": "playground", "ls": "custom", "expr": "sqrt(x) + y**2", "dx0": "0", "dx1": "3",
                          "dy0": "-1", "dy1": "1", "opts": "mezo,adam", "mezo.lr": "0.05", "steps": "50"})
    no_crash(at)
    warnings = [text(w) for w in at.warning]
    assert any(w.startswith("MeZO diverged at step ") for w in warnings)
    spec = contour_spec(at)
    marker = next(t for t in spec["data"] if t["name"] == "diverged")
    assert len(marker["x"]) >= 1 and "MeZO diverged at step" in marker["hovertext"][0]
    # Blowing up to a huge but finite loss is divergence too (a ZO run freezes there rather than reaching inf).
    at = open_page(PLAY, {"view": "playground", "opts": "mezo", "mezo.lr": "0.05", "steps": "100", "repeats": "1"})
    assert any(text(w).startswith("MeZO diverged: its loss grew from 12.5 to 2.36e+97 and the path left the "
                                  "plotted domain at step") for w in at.warning)
    # A start outside the plotted domain is said to be one.
    at = open_page(PLAY, {"view": "playground", "opts": "adam", "steps": "5", "x0": "10", "y0": "1"})
    assert [text(w) for w in at.warning] == [
        "Adam (first order) starts outside the plotted domain, at (10, 1); choose a start inside it to see the path."]


def test_playground_fair_comparison_budget_and_path_length():
    at = open_page(PLAY, {"view": "playground", "opts": "mezo,adam,hizoo", "steps": "40", "fair": "budget"})
    no_crash(at)
    table = {r["optimizer"]: r for r in metrics_table(at)}
    assert table["MeZO"]["steps"] == "40" and table["Adam (first order)"]["steps"] == "80"
    assert table["HiZOO"]["steps"] == "26"
    assert table["MeZO"]["forward passes"] == "80" and table["HiZOO"]["forward passes"] == "78"
    assert any("Equal forward passes: every optimizer gets 80 forward passes" in text(c) for c in at.caption)
    at = open_page(PLAY, {"view": "playground", "opts": "adam,adamezo", "steps": "30", "fair": "path"})
    no_crash(at)
    table = {r["optimizer"]: r for r in metrics_table(at)}
    ref = float(table["Adam (first order)"]["path length"])
    assert float(table["AdaMeZO"]["path length"]) == pytest.approx(ref, rel=0.03)
    assert float(table["AdaMeZO"]["lr"]) != pytest.approx(DEMO_HYPER["adamezo"]["lr"])
    assert any("Equal path length" in text(c) for c in at.caption)


# --------------------------------------------------------------------------------- compare
def test_compare_default_small_multiples_bands_and_ranking():
    at = open_page(COMPARE, {"view": "compare", "steps": "100", "repeats": "2"})
    no_crash(at)
    grid, loss = charts(at)
    assert sum(t["type"] == "contour" for t in grid["data"]) == 4
    assert [a["text"] for a in grid["layout"]["annotations"]] == [f"beta1 = {v}" for v in ("0", "0.5", "0.7", "0.9")]
    bands = [t for t in loss["data"] if t["name"].endswith(" band")]
    assert len(bands) == 4
    rank = ranking_table(at)
    assert [r["rank"] for r in rank] == ["1", "2", "3", "4"]
    finals = [float(r["median final loss"]) for r in rank]
    assert finals == sorted(finals)
    # The ranking's numbers are the library's: median over seeds 0 and 1 (shown to 4 digits).
    best = rank[0]
    b1 = float(best["value"])
    ref = [landscapes.run_trajectory("rosenbrock", "adamezo", 100, {"lr": DEMO_HYPER["adamezo"]["lr"], "beta1": b1},
                                     seed=s).final_loss
           for s in (0, 1)]
    assert float(best["median final loss"]) == pytest.approx(float(np.median(ref)), rel=1e-3)


def test_compare_seed_budget_and_bad_values():
    at = open_page(COMPARE, {"view": "compare", "opt": "mezo", "param": "seed_budget", "values": "1, 2, none",
                             "ls": "rotated-quadratic", "steps": "50", "mezo.lr": "0.008"})
    no_crash(at)
    assert sorted(r["value"] for r in ranking_table(at)) == ["1", "2", "none"]
    at = open_page(COMPARE, {"view": "compare", "values": "0.5, 2", "steps": "20"})
    no_crash(at)
    assert [text(e) for e in at.error] == [
        "The values to sweep are not valid: beta1: AdaMeZO: invalid beta1=2.0 (too large); "
        "allowed: a number >= 0 and < 1"]
    at = open_page(COMPARE, {"view": "compare", "opt": "mezo", "param": "horizon", "steps": "20"})
    no_crash(at)
    assert any("MeZO has no hyperparameter 'horizon' to sweep" in text(e) for e in at.error)
    assert at.selectbox(key="compare:param").value == "lr"


def test_compare_sweeps_betas_pairs_with_one_lr_per_value():
    """The paper's β study on the Compare page: (0.7, 0.9) and (0, 0) with their own lrs; (0, 0) is MeZO."""
    at = open_page(COMPARE, {"view": "compare", "opt": "adamezo", "param": "betas", "values": "0.7/0.9, 0/0",
                             "lrs": "0.01, 0.0005", "ls": "quadratic", "kappa": "1000", "steps": "60",
                             "repeats": "1"})
    no_crash(at)
    assert [text(e) for e in at.error] == []
    grid, loss = charts(at)
    assert [a["text"] for a in grid["layout"]["annotations"]] == ["betas = 0.7/0.9", "betas = 0/0"]
    rank = {r["value"]: r for r in ranking_table(at)}
    assert rank["0.7/0.9"]["lr"] == "0.01" and rank["0/0"]["lr"] == "5e-4"
    mezo = landscapes.run_trajectory(landscapes.get("quadratic", kappa=1000), "mezo", 60, {"lr": 0.0005})
    assert rank["0/0"]["median final loss"] == number_text(mezo.final_loss)  # MeZO's run
    assert any("lr per value: 0.7/0.9 → 0.01, 0/0 → 0.0005" in text(c) for c in at.caption)
    assert at.query_params["lrs"] == "0.01, 0.0005" and "adamezo.beta1" not in at.query_params


def test_compare_sweeps_two_optimizers_side_by_side():
    at = open_page(COMPARE, {"view": "compare", "opt": "mezo,adamezo", "param": "seed_budget", "values": "1, none",
                             "steps": "40", "mezo.lr": "0.0007", "adamezo.lr": "0.01"})
    no_crash(at)
    grid, loss = charts(at)
    assert [a["text"] for a in grid["layout"]["annotations"]] == [
        "MeZO<br>seed budget = 1", "MeZO<br>seed budget = none", "AdaMeZO<br>seed budget = 1",
        "AdaMeZO<br>seed budget = none"]
    lines = {t["name"]: t["line"]["dash"] for t in loss["data"] if t.get("mode") == "lines"}
    assert lines["MeZO · seed budget = 1"] != lines["AdaMeZO · seed budget = 1"]
    rank = {(r["optimizer"], r["value"]): r for r in tables(at, "rank")}
    ref = landscapes.run_trajectory("rosenbrock", "adamezo", 40, {"lr": 0.01}, seed_budget=1)
    assert rank[("AdaMeZO", "1")]["median final loss"] == number_text(ref.final_loss)
    assert len(rank) == 4


@pytest.mark.parametrize("params, message", [
    ({"opt": "adamezo", "param": "betas", "values": "0.7/0.9, 0/0", "lrs": "0.01"},
     "The per-value learning rates are not valid: 1 lrs given for 2 values; give one lr per value, or none"),
    ({"opt": "mezo,adamezo", "param": "eps", "values": "0.001, 0.01", "lrs": "0.01, 0.02"},
     "The per-value learning rates are not valid: one lr per value needs a single optimizer"),
    ({"opt": "adamezo", "param": "betas", "values": "0.7, 0.9"},
     "The values to sweep are not valid: betas value '0.7' is not a pair; write it as beta1/beta2, e.g. 0.7/0.9"),
    ({"opt": "adamezo", "param": "betas", "values": "0.7/1"},
     "The values to sweep are not valid: beta2: AdaMeZO: invalid beta2=1.0 (too large)"),
    ({"opt": "adamezo", "param": "eps", "values": "0.001", "lrs": "-1"},
     "The per-value learning rates are not valid: lr: AdaMeZO: invalid lr=-1.0 (too small)"),
])
def test_compare_explains_bad_sweeps(params, message):
    at = open_page(COMPARE, {"view": "compare", "steps": "5"} | params)
    no_crash(at)
    assert any(text(e).startswith(message) for e in at.error), [text(e) for e in at.error]


# --------------------------------------------------------------------------------- lessons
@pytest.mark.parametrize("slug", [lesson.slug for lesson in LESSON_LIST])
def test_each_lesson_shows_its_figure_its_rules_and_a_verdict_per_claim(slug):
    lesson = LESSON_BY_SLUG[slug]
    at = open_page(LESSONS, {"view": "lessons", "lesson": slug, "seeds": "1"})
    no_crash(at)
    assert [text(e) for e in at.error] == []
    assert charts(at)
    verdicts = [b.value for b in [*at.success, *at.warning] if b.value.startswith(tuple(
        f"**Claim:** {stmt}." for stmt in (lessons_mod.statement(lesson, c) for c in lesson.claims)))]
    assert len(verdicts) == len(lesson.claims)
    assert all(("As claimed: " in v) or ("Not this time: " in v) for v in verdicts)
    if lesson.rules:
        rules = [text(c) for c in at.caption if c.value.startswith("**Learning rates**")]
        assert len(rules) == 1 and rules[0].count("\n- ") == len(lesson.rules)
    if lesson.kind != "memory":
        assert at.button(key=f"lessons:load:{slug}")


def test_lesson_verdict_is_the_checks_verdict_on_the_same_seeds():
    """The page's sentences equal what ``python -m app.lessons check`` computes for the same seeds."""
    lesson = LESSON_BY_SLUG["curvature"]
    at = open_page(LESSONS, {"view": "lessons", "lesson": "curvature", "seed": "3", "seeds": "2"})
    no_crash(at)
    shown = [b.value.split("\n", 1)[1] for b in [*at.success, *at.warning] if "As claimed" in b.value
             or "Not this time" in b.value]
    expected = [r.sentence for r in lessons_mod.evaluate(lesson, lessons_mod.measure(lesson, [3, 4]))]
    assert shown == expected


def test_lesson_button_loads_the_exact_setting():
    lesson = LESSON_BY_SLUG["paper"]
    at = open_page(LESSONS, {"view": "lessons", "lesson": "paper", "seeds": "2"})
    at.button(key="lessons:load:paper").click().run()
    no_crash(at)
    lrs = lessons_mod.stored_lrs()["paper"]
    assert at.query_params["view"] == "playground" and at.query_params["opts"] == "adam,mezo,adamezo"
    assert float(at.query_params["mezo.lr"]) == lrs["mezo"]["lr"]
    assert float(at.query_params["adamezo.lr"]) == lrs["adamezo"]["lr"]
    assert at.query_params["budget"] == "none" and at.query_params["steps"] == "1000"
    assert at.query_params["repeats"] == "2"
    assert list(path_traces(contour_spec(at))) == ["Adam (first order)", "MeZO", "AdaMeZO"]
    # The Playground's table shows the very numbers the lesson's claim is about.
    values = lessons_mod.measure(lesson, [0, 1])
    table = {r["optimizer"]: r for r in metrics_table(at)}
    for name, title in (("mezo", "MeZO"), ("adamezo", "AdaMeZO")):
        median = float(np.median(values["final_loss"][name]))
        assert float(table[title]["median final loss (seeds)"]) == pytest.approx(median, rel=1e-3)


def test_memory_lesson_numbers_come_from_the_library():
    at = open_page(LESSONS, {"view": "lessons", "lesson": "memory"})
    no_crash(at)
    table = at.dataframe[0].value
    measured = table[table["parameters"] == "100,000"].set_index("optimizer")
    assert set(measured["source"]) == {"measured"}
    assert measured.loc["AdaMeZO", "bytes"] == 16 * 10  # K = 10 (seed, c) pairs
    assert measured.loc["MeZO", "bytes"] < 100
    assert 800_000 <= measured.loc["Adam (first order)", "bytes"] < 800_100  # m and v in float32
    assert 800_000 <= measured.loc["ZO-Adam", "bytes"] < 800_100
    assert 400_000 <= measured.loc["HiZOO", "bytes"] < 400_100
    big = table[table["parameters"] == "13,000,000,000"].set_index("optimizer")
    assert big.loc["AdaMeZO", "bytes"] == 160 and big.loc["Adam (first order)", "bytes"] >= 104e9
    bars = charts(at)[0]
    assert bars["layout"]["yaxis"]["type"] == "log" and len(bars["data"]) == len(lessons_mod.OPTIMIZERS)
    # The paper's Table 1, every optimizer, from the same measurements.
    table1 = at.dataframe[1].value.set_index("optimizer")
    assert list(table1.index) == [e.title for e in lessons_mod.OPTIMIZERS.values()]
    assert table1.loc["AdaMeZO", "parameter memory"] == "1P + 160 B"
    assert table1.loc["ZO-Adam", "parameter memory"] == "3P + 20 B" and table1.loc["HiZOO", "parameter memory"] == "2P + 16 B"
    assert table1.loc["HiZOO", "forward passes per step"] == 3 and table1.loc["MeZO", "1st moment"] == "×"
    # The button opens the LLM page with runs that can all start on the CPU (at most two at once).
    at.button(key="lessons:load:memory").click().run()
    assert at.query_params["opts"] == "mezo,adamezo"


def test_lessons_bad_link_falls_back_to_the_first_lesson():
    at = open_page(LESSONS, {"view": "lessons", "lesson": "astrology", "seeds": "40"})
    no_crash(at)
    assert any("lesson='astrology' is not a known option" in text(w) for w in at.warning)
    assert any("seeds='40' is out of range" in text(w) for w in at.warning)
    assert at.query_params["lesson"] == "paper" and at.query_params["seeds"] == "8"


# --------------------------------------------------------------------------------- LLM page
def fake_run(root, name, status="finished", steps=20, optimizer="adamezo", lr=1e-3, seed=0, loss_scale=1.0,
             memory=None, records=True):
    d = root / name
    d.mkdir(parents=True)
    (d / "started").touch()
    (d / "config.json").write_text(json.dumps({"optimizer": optimizer, "steps": steps, "hyper": {"lr": lr},
                                               "seed": seed, "data": "assets/graded"}))
    (d / "status.json").write_text(json.dumps({"status": status} | ({"step": steps // 2, "signal": "SIGTERM"}
                                                                    if status == "stopped" else {})))
    if not records:
        return d
    lines = []
    for s in range(1, steps + 1):
        rec = {"step": s, "forward_passes": 2 * s, "train_loss": 1.0 / s, "wall_time_s": 0.5 * s,
               "peak_memory_bytes": 123_456_789, "optimizer_state_bytes": 160}
        if s % 10 == 0:
            rec |= {"eval_loss": loss_scale * 0.5, "eval_accuracy": 0.5 + s / 100 / loss_scale}
        if memory is not None and s >= 2:
            rec["memory"] = memory
        lines.append(json.dumps(rec))
    (d / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    return d


MEASURED_ADAMEZO = {"weights": 3751936, "gradients": 0, "optimizer_state": 160, "activations_saved": 0,
                    "forward_working": 6754836, "backward_working": 0, "optimizer_temporaries": 1536008,
                    "peak_total": 12042788, "optimizer_buffers": 1536000, "optimizer_workers": 1,
                    "measured_step": 2, "batch_size": 16, "batch_tokens": 41}
MEASURED_ADAM = {"weights": 3751936, "gradients": 3751936, "optimizer_state": 7504144, "activations_saved": 17323844,
                 "forward_working": 3390864, "backward_working": 3534848, "optimizer_temporaries": 1024000,
                 "peak_total": 31701272, "optimizer_buffers": 0, "optimizer_workers": 1, "measured_step": 2,
                 "batch_size": 16, "batch_tokens": 41}


def captions(at) -> list[str]:
    return [text(c) for c in at.caption]


def test_llm_page_finds_runs_and_shows_counters_charts_and_who_is_ahead(tmp_path, monkeypatch):
    monkeypatch.setenv("ADAMEZO_RUNS_DIR", str(tmp_path))
    fake_run(tmp_path, "adamezo-lr0.001-s0")
    fake_run(tmp_path, "mezo-lr0.0003-s0", optimizer="mezo", lr=3e-4, loss_scale=1.2)
    at = open_page(LLM, {"view": "llm"})
    no_crash(at)
    rows = [c for c in captions(at) if "forward passes ·" in c]
    assert rows[0] == ("40 forward passes · 2.0 steps/s · dev accuracy 0.667 · tensors' peak 0 B · optimizer state "
                       "160 B · process peak (RSS) 123 MB")
    loss, acc = charts(at)[:2]
    assert [t["name"] for t in acc["data"]] == ["MeZO · lr 3e-4 · seed 0", "AdaMeZO · lr 1e-3 · seed 0"]
    assert list(decode(loss["data"][1]["x"])) == list(range(2, 42, 2))  # raw points, then the EMA line
    assert loss["data"][0]["opacity"] == 0.22 and loss["data"][0]["showlegend"] is False
    assert list(decode(acc["data"][1]["y"])) == [0.6, 0.7]
    assert acc["layout"]["legend"]["y"] < 0 and acc["layout"]["uirevision"] == "acc:forward_passes"
    info = [text(i) for i in at.info]
    assert info == ["**AdaMeZO · lr 1e-3 · seed 0** leads **MeZO · lr 3e-4 · seed 0** at 40 forward passes: dev loss "
                    "0.500 vs 0.600, dev accuracy 70.0 % vs 66.7 % (+3.3 points). It reached MeZO's dev loss in "
                    "0.50 × the passes."]
    # the page's defaults: the graded task, the race's budget and lrs
    assert at.query_params["opts"] == "mezo,adamezo" and at.query_params["task"] == "graded"
    assert at.query_params["steps"] == "1000" and at.query_params["mezo.lr"] == "0.0003"
    assert at.query_params["adamezo.lr"] == f"{DEMO_LR:g}"


def test_llm_page_axes_smoothing_and_zoom_revision(tmp_path, monkeypatch):
    monkeypatch.setenv("ADAMEZO_RUNS_DIR", str(tmp_path))
    fake_run(tmp_path, "r1")
    for x, first in (("step", 1), ("wall_time_s", 0.5)):
        at = open_page(LLM, {"view": "llm", "x": x, "smooth": "0"})
        no_crash(at)
        loss, acc = charts(at)[:2]
        assert len(loss["data"]) == 1 and decode(loss["data"][0]["x"])[0] == first  # no smoothing: one trace
        assert list(decode(loss["data"][0]["y"]))[:2] == [1.0, 0.5]
        assert acc["layout"]["uirevision"] == f"acc:{x}"
        assert loss["layout"]["title"]["text"] == f"Training loss against {'steps' if x == 'step' else 'training time (s)'}"
    at = open_page(LLM, {"view": "llm", "smooth": "0.5"})
    raw, smooth = charts(at)[0]["data"]
    assert list(decode(smooth["y"]))[:2] == pytest.approx([1.0, (0.5 * 0.5 * 1.0 + 0.5 * 0.5) / 0.75])  # bias-corrected
    at.run()  # a refresh keeps the revision: Plotly keeps the zoom
    assert charts(at)[0]["layout"]["uirevision"] == "loss:forward_passes"


def test_llm_page_starting_stopped_failed_and_resume(tmp_path, monkeypatch):
    monkeypatch.setenv("ADAMEZO_RUNS_DIR", str(tmp_path))
    fake_run(tmp_path, "stopped", status="stopped", optimizer="mezo", lr=3e-4)
    fake_run(tmp_path, "young", status="running", records=False)  # no pid yet, started just now
    d = fake_run(tmp_path, "failed", status="failed", optimizer="hizoo", lr=3e-4)
    (d / "status.json").write_text(json.dumps({"status": "failed", "error": "ValueError: step 7: the training "
                                                                            "loss is not finite"}))
    (tmp_path / "stopped" / "checkpoint.pt").write_bytes(b"x")
    at = open_page(LLM, {"view": "llm"})
    no_crash(at)
    assert sorted(at.multiselect(key="llm:show").value) == ["failed", "stopped", "young"]
    body = " ".join(text(m) for m in at.markdown)
    assert "starting… (loading the model, the first step)" in body
    assert "Stopped: asked to stop (the page's Stop button or a kill) at step 10 of 20; a checkpoint is saved, so it " \
           "can be resumed." in captions(at)
    assert [text(e) for e in at.error] == ["HiZOO · lr 3e-4 · seed 0 failed: ValueError: step 7: the training loss "
                                           "is not finite"]
    assert at.button(key="llm:resume:stopped") is not None
    with pytest.raises(KeyError):
        at.button(key="llm:resume:failed")  # no checkpoint: nothing to resume from


def test_llm_page_memory_by_category_measured_and_extrapolated(tmp_path, monkeypatch):
    from llm_demo import memory as M

    monkeypatch.setenv("ADAMEZO_RUNS_DIR", str(tmp_path))
    fake_run(tmp_path, "a", memory=MEASURED_ADAMEZO)
    fake_run(tmp_path, "m", optimizer="adam", lr=1e-4, memory=MEASURED_ADAM)
    at = open_page(LLM, {"view": "llm"})
    no_crash(at)
    mem = charts(at)[-1]
    names = [t["name"] for t in mem["data"]]
    assert names == ["weights", "gradients", "optimizer state", "activations saved for backward",
                     "forward working memory", "backward working memory", "optimizer temporaries",
                     "peak of all tensors at once"]
    assert list(mem["data"][0]["y"]) == ["Adam (first order) · lr 1e-4 · seed 0", "AdaMeZO · lr 1e-3 · seed 0"]
    assert list(decode(mem["data"][2]["x"])) == pytest.approx([7504144 / 1e6, 160 / 1e6])
    at = open_page(LLM, {"view": "llm", "mem": "OPT-13B"})
    no_crash(at)
    mem = charts(at)[-1]
    peaks = list(decode(mem["data"][-1]["x"]))
    weights = 12_853_473_280 * 4 / 1e9  # GB: AdaMeZO needs little beyond the weights, Adam about 4 times them
    assert weights < peaks[1] < 1.05 * weights and 4 * weights < peaks[0] < 4.2 * weights
    assert any(c.startswith("The same steps extrapolated to OPT-13B") for c in captions(at))
    assert any("meta device" in text(m) for m in at.markdown)  # the formula, in the "How" expander


def test_llm_page_bad_input_is_an_error_not_a_traceback(tmp_path, monkeypatch):
    monkeypatch.setenv("ADAMEZO_RUNS_DIR", str(tmp_path))
    monkeypatch.setenv("ADAMEZO_MODEL_ROOTS", str(tmp_path))  # inside an allowed root, the page says what is wrong
    at = open_page(LLM, {"view": "llm", "model": str(tmp_path / "missing-model"), "opts": "mezo", "steps": "0"})
    no_crash(at)
    assert any("steps='0' is out of range" in text(w) for w in at.warning)
    at.button(key="llm:start").click().run()
    no_crash(at)
    assert any("MeZO did not start" in e.value and "no such model folder" in text(e) for e in at.error)


def test_llm_page_reads_no_path_outside_the_allowed_roots_and_does_not_say_what_exists(tmp_path, monkeypatch):
    runs_dir = tmp_path / "runs"
    monkeypatch.setenv("ADAMEZO_RUNS_DIR", str(runs_dir))
    monkeypatch.delenv("ADAMEZO_MODEL_ROOTS", raising=False)
    monkeypatch.delenv("ADAMEZO_DATA_ROOTS", raising=False)
    seen = {}
    for link in ({"model": "/etc"}, {"model": "/no/such/folder"}, {"data": "/etc/passwd"},
                 {"data": "/no/such/file.jsonl"}, {"model": "assets/../../../../etc"}):
        at = open_page(LLM, {"view": "llm", "opts": "mezo", "steps": "5"} | link)
        at.button(key="llm:start").click().run()
        no_crash(at)
        errors = [text(e) for e in at.error]
        assert len(errors) == 1, errors
        seen[json.dumps(link)] = errors[0]
        assert "passwd" not in errors[0] and "/etc" not in errors[0] and "/no/such" not in errors[0]
    kinds = {k: v for k, v in seen.items() if '"model"' in k}
    assert len(set(kinds.values())) == 1 and len(set(seen.values())) == 2
    assert next(iter(kinds.values())) == (
        "No run started: this model folder is not one the app may read; allowed: empty for the bundled one, or a "
        "path under the folders the server's operator lists in the ADAMEZO_MODEL_ROOTS setting (none are listed)")
    assert not runs_dir.exists() or not any(runs_dir.iterdir())


def test_llm_page_survives_a_corrupt_metrics_line_and_a_rewritten_file(tmp_path, monkeypatch):
    monkeypatch.setenv("ADAMEZO_RUNS_DIR", str(tmp_path))
    d = fake_run(tmp_path, "torn", status="running")
    lines = (d / "metrics.jsonl").read_text().splitlines()
    lines[4] = lines[4][:20]  # a corrupt line in the middle
    (d / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    at = open_page(LLM, {"view": "llm"})
    no_crash(at)
    loss, _ = charts(at)
    assert list(loss["data"][0]["x"]) == [2 * s for s in range(1, 21) if s != 5]
    assert any("1 unreadable line(s) of its metrics.jsonl were skipped" in text(c) for c in at.caption)
    # a resume rewrites the file shorter (steps 1-3), and it regrows past where the page had read
    tmp = d / "metrics.jsonl.tmp"
    tmp.write_text("\n".join(lines[:3]) + "\n")
    os.replace(tmp, d / "metrics.jsonl")
    with open(d / "metrics.jsonl", "a") as f:
        for s in range(4, 41):
            f.write(json.dumps({"step": s, "forward_passes": 2 * s, "train_loss": 0.5, "wall_time_s": 0.5 * s,
                                "peak_memory_bytes": 1, "optimizer_state_bytes": 160}) + "\n")
    at.run()
    no_crash(at)
    loss, _ = charts(at)
    assert list(loss["data"][0]["x"]) == [2 * s for s in range(1, 41)]
    assert not any("unreadable" in text(c) for c in at.caption)


def test_charts_load_the_plotly_js_that_plotly_ships_and_only_the_contour_takes_clicks():
    import plotly.offline

    from app import chart

    js = chart.PLOTLY_DIR / chart.PLOTLY_JS
    assert f"plotly.js v{plotly.offline.get_plotlyjs_version()}" in js.read_text(encoding="utf-8")[:200]
    at = open_page(None, {"view": "playground", "opts": "mezo", "steps": "20", "surface3d": "1"})
    no_crash(at)
    sent = {e.proto.id.rsplit("-", 1)[-1]: json.loads(e.proto.json) for e in at.get("bidi_component")}
    assert sorted(sent) == ["playground:chart", "playground:surface", "preload"]
    # The sidebar's empty instance starts loading the same plotly.js before the page computes anything.
    preload = sent.pop("preload")
    assert preload["items"] == [] and preload["preload"] is True
    assert preload["src"] == sent["playground:chart"]["src"]
    assert {k: d["clickable"] for k, d in sent.items()} == {"playground:chart": True, "playground:surface": False}
    assert all(d["src"].startswith("/component/") and d["src"].endswith("/plotly.min.js") for d in sent.values())
    contour, loss = sent["playground:chart"]["items"]  # side by side in one component (the contour takes clicks)
    assert contour["config"] == {"displaylogo": False, "doubleClick": False}
    assert loss["config"] == sent["playground:surface"]["items"][0]["config"] == {"displaylogo": False}
    assert (contour["basis"], loss["basis"]) == (460, 380) and sent["playground:chart"]["present"] is False
