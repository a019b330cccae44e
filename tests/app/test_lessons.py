"""Lessons as tested claims: the check command, the verdict sentences, the rules behind every lr, and the
page showing the same verdict as the check."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import ROOT

from app import lessons as L
from app import presets


def run_check(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app.lessons", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=900)


# --------------------------------------------------------------------------------- the check, seeds 0-7
def test_every_lesson_claim_holds_on_seeds_0_to_7():
    """The issue's contract: ``python -m app.lessons check --seeds 0-7`` passes. Every lesson's claims and
    every stored lr's rule appear in the table."""
    out = run_check("check", "--seeds", "0-7")
    assert out.returncode == 0, out.stdout + out.stderr
    rows = [line for line in out.stdout.splitlines() if line.startswith("| ") and not line.startswith("| lesson")]
    assert all(line.endswith("| holds |") for line in rows), out.stdout
    claims = [r for r in rows if "lr rule of" not in r]
    assert len(claims) == sum(len(lesson.claims) for lesson in L.LESSONS)
    rules = [r for r in rows if "lr rule of" in r]
    assert len(rules) == sum(len(lesson.rules) for lesson in L.LESSONS)
    assert out.stdout.strip().endswith("All claims hold.")
    assert "streamlit" not in out.stderr.lower()


def test_lessons_module_imports_no_streamlit():
    code = "import sys, app.lessons; print('streamlit' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr


def test_check_exits_1_when_a_claim_fails(monkeypatch, capsys):
    """Give AdaMeZO MeZO's learning rate in lesson 1: its rule and its claim both fail, and the check says so."""
    lesson = L.LESSONS_BY_SLUG["paper"]
    lrs = L.stored_lrs()
    changed = json.loads(json.dumps(lrs))
    changed["paper"]["adamezo"]["lr"] = lrs["paper"]["mezo"]["lr"]
    monkeypatch.setattr(L, "stored_lrs", lambda: json.loads(json.dumps(changed)))
    ok = L.check([0, 1, 2], L.run_here, [lesson])
    out = capsys.readouterr().out
    assert ok is False and out.strip().endswith("Some claims FAIL.")
    rows = {line.split(" | ")[1]: line for line in out.splitlines() if line.startswith("| 1 |")}
    assert rows["lr rule of AdaMeZO"].endswith("| FAILS |") and rows["lr rule of MeZO"].endswith("| holds |")
    assert rows["MeZO's median final loss is at least 10× AdaMeZO's"].endswith("| FAILS |")
    assert "allowed: within 5%" in rows["lr rule of AdaMeZO"]


def test_check_rejects_a_bad_seed_range():
    out = run_check("check", "--seeds", "7-3")
    assert out.returncode == 2
    assert "--seeds '7-3' is not a seed range; allowed: FIRST-LAST" in out.stderr
    assert L.parse_seeds("3") == [3] and L.parse_seeds(" 8-15 ") == list(range(8, 16))
    for bad in ("x", "-1-3", "0-100", "1-2-3"):
        with pytest.raises(ValueError, match="allowed"):
            L.parse_seeds(bad)


# --------------------------------------------------------------------------------- verdicts from data
def test_verdict_sentences_come_from_the_claim_and_the_numbers():
    lesson = L.LESSONS_BY_SLUG["paper"]
    values = {"final_loss": {"mezo": [4.0, 5.0, 6.0], "adamezo": [0.1, 0.2, 0.3]},
              "end_gap": {"mezo": [2.0], "adamezo": [1.5]}}
    final, gap = L.evaluate(lesson, values)
    assert final.holds and final.a == 5.0 and final.b == 0.2
    assert final.statement == "MeZO's median final loss is at least 10× AdaMeZO's"
    assert final.sentence == ("As claimed: MeZO's median final loss (5) is 25× AdaMeZO's (0.2); "
                              "claimed: at least 10×.")
    assert not gap.holds
    assert gap.sentence == ("Not this time: MeZO's median distance from Adam's end point (2) is 1.33× "
                            "AdaMeZO's (1.5); claimed: at least 2×.")


def test_every_relation_can_fail():
    lesson = L.LESSONS_BY_SLUG["seed-budget"]
    ok = {"line_offset": {"mezo[1]": [0.0, 1e-12], "adamezo[1]": [0.0]},
          "final_loss": {"adamezo[1]": [5.0], "adamezo[none]": [0.1], "mezo[none]": [4.0]}}
    assert all(r.holds for r in L.evaluate(lesson, ok))
    bad = {"line_offset": {"mezo[1]": [0.0, 0.3], "adamezo[1]": [0.0]},  # max over seeds, not the median
           "final_loss": {"adamezo[1]": [0.5], "adamezo[none]": [0.1], "mezo[none]": [float("inf")]}}
    results = L.evaluate(lesson, bad)
    assert [r.holds for r in results] == [False, True, False, True]
    assert results[0].sentence.startswith("Not this time: MeZO, seed budget 1's largest distance")
    assert "is infinitely many times AdaMeZO, seed budget none's" in results[3].sentence  # a diverged run
    memory = L.LESSONS_BY_SLUG["memory"]
    res = L.evaluate(memory, {"state_bytes": {"adamezo@1000": [160.0], "adamezo@100000": [176.0],
                                              "adam@100000": [800_004.0]}})
    assert [r.holds for r in res] == [False, True]
    assert res[0].sentence == ("Not this time: AdaMeZO (1,000 parameters)'s optimizer state (160 B) is 0.909× "
                               "AdaMeZO (100,000 parameters)'s (176 B); claimed: equal.")
    spsa = L.LESSONS_BY_SLUG["spsa"]
    res = L.evaluate(spsa, {"mean_error": {"mezo": [0.25]}, "single_error": {"mezo": [0.3, 0.4]}})
    assert [r.holds for r in res] == [False, False]
    assert res[0].sentence == ("Not this time: MeZO's error of the average estimate, relative to ‖∇f‖ is 25%; "
                               "claimed: at most 20%.")


def test_claims_name_their_own_runs():
    with pytest.raises(ValueError, match="unknown metric"):
        L.Claim("speed", "mezo", "ratio", 3, "adamezo")
    with pytest.raises(ValueError, match="needs a second subject"):
        L.Claim("final_loss", "mezo", "ratio", 3)
    lesson = L.LESSONS_BY_SLUG["curvature"]
    with pytest.raises(ValueError, match="claim names 'mezo', which is not one of its runs"):
        L.trajectory_values(lesson, {"adamezo": []}, L.landscapes.get("quadratic", kappa=1000))


# --------------------------------------------------------------------------------- lrs come from rules
def test_every_zeroth_order_lr_of_a_lesson_comes_from_a_rule():
    for lesson in L.LESSONS:
        params = L.setting(lesson)
        for key in params:
            if key.endswith(".lr"):
                name = key.split(".")[0]
                assert name in lesson.rules or not L.OPTIMIZERS[name].zeroth_order, (lesson.slug, key)
        if "lrs" in params:
            assert all("[" in s for s in lesson.rules)


def test_the_playground_opens_on_lesson_1_with_its_rule_lrs():
    lrs = L.stored_lrs()["paper"]
    assert presets.DEMO_HYPER["mezo"]["lr"] == lrs["mezo"]["lr"]
    assert presets.DEMO_HYPER["adamezo"]["lr"] == lrs["adamezo"]["lr"]
    assert presets.DEMO_HYPER["adam"]["lr"] == float(presets.LANDING["adam.lr"])
    fields = {f.key: f.default for f in L.controls.playground_fields()}
    landing = L.typed_setting(L.LESSONS_BY_SLUG["paper"])
    for key in ("ls", "steps", "budget", "repeats", "opts", "fair", "seed"):
        assert fields[key] == landing[key], key


def test_rules_describe_themselves():
    assert L.PathRule(0.03).describe() == ("path length matched to 1.5 × Adam's (Adam at lr 0.03; median over "
                                           "seeds 1000–1007)")
    assert L.GridRule(1e-3, 1e-1, 9).describe().startswith("best median final loss on a log grid of 9 lrs")
    assert L.SameAs("paper", "mezo").describe().startswith("as in lesson 1 (path length matched")
