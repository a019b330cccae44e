"""What a link can make the server do (issue 12): bounded work, no Markdown from the URL, no traceback.

Links are opened through AppTest as a new browser tab would open them. The runs a page computes are
counted by wrapping the engine (``landscapes.run_trajectory`` for the pages' runs and
``landscapes.compare.run_trajectory`` for path-length matching), in MeZO steps as the app's budget
counts them; every run stays in this process (``ADAMEZO_APP_PROCESSES=1``) so that none escapes the count.
"""

from __future__ import annotations

import os
import re
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs
from markdown_it import MarkdownIt

import landscapes
import landscapes.compare
from conftest import charts, open_page, text

from app import controls
from app.text import plain, unescape

PAGES = {"playground": "app_pages/playground.py", "compare": "app_pages/compare.py",
         "lessons": "app_pages/lessons.py", "llm": "app_pages/llm.py"}
HOSTILE = ["**[Session expired](https://evil.example/login)**", "![x](https://evil.example/t.png)",
           "<img src=x onerror=alert(1)>", "$\\frac{1}{0}$", ":red[alarm] :material/home:", "1e999", "-0",
           "nan", "inf", "10" * 40, "0x10", " 3 ", "None", "[]", "{}", "../../etc/passwd", "\x00", "日本",
           "1,2,3", "0.7/0.9", "mezo,adamezo,zo-adam,hizoo,adam,adamw", "5000", "20", "1000000000"]


@pytest.fixture
def counted(monkeypatch):
    """The work the pages compute, in MeZO steps (``controls.step_cost``), with a small budget."""
    monkeypatch.setenv("ADAMEZO_APP_PROCESSES", "1")
    monkeypatch.setenv("ADAMEZO_APP_MAX_WORK", "5000")
    done = {"work": 0.0}
    done["reset"] = lambda: done.update(work=0.0)
    real = landscapes.run_trajectory

    def run(ls, name, steps=500, hyper=None, *args, **kwargs):
        done["work"] += int(steps) * controls.step_cost(name, dict(hyper or {}))
        return real(ls, name, steps, hyper, *args, **kwargs)

    monkeypatch.setattr(landscapes, "run_trajectory", run)
    monkeypatch.setattr(landscapes.compare, "run_trajectory", run)
    from app import compute

    compute.RUNS.clear()
    return done


def open_link(page: str, params: dict, counted: dict | None = None):
    """Open ``page`` with URL ``params``; the work counted is the page's own (not AppTest's warm-up)."""
    return open_page(PAGES[page], params, after_warmup=counted["reset"] if counted else None)


#: GitHub-flavoured autolink literals, as Streamlit's Markdown (remark-gfm) finds them in the text *after*
#: escapes are resolved: ``http(s)://``, ``www.`` and e-mail addresses.
AUTOLINK = re.compile(r"(?i)\b(?:https?://|www\.)\S+|[-.\w+]+@[-\w]+(?:\.[-\w]+)+")


def links_in(markdown: str) -> list[str]:
    """What a Markdown body would render as a link or an image: link and image tokens (CommonMark), and
    autolink literals in the text that is shown."""
    out = []
    for block in MarkdownIt("commonmark").parse(markdown):
        children = block.children or []
        out += [t.attrs.get("href") or t.attrs.get("src") for t in children if t.type in ("link_open", "image")]
        # The text around escapes is one text again when autolinks are looked for.
        out += AUTOLINK.findall("".join(t.content for t in children if t.type == "text"))
    return out


def test_plain_text_renders_as_itself():
    for raw in HOSTILE + [string.punctuation, "a\nb\r\n\tc"]:
        body = plain(raw)
        assert links_in(body) == [] and "\n" not in body
        assert unescape(body) == " ".join(raw.split())
    rendered = MarkdownIt("commonmark").renderInline(plain("**[x](https://evil.example)** `code` a@b.co"))
    assert rendered.replace("\u2060", "") == "**[x](https://evil.example)** `code` a@b.co"
    assert links_in("see https\\:\\/\\/evil\\.example") == ["https://evil.example"]  # escapes alone: a link


def test_the_issues_link_is_refused_before_any_work(counted):
    """``steps=5000&repeats=20&adamezo.horizon=1000000000``: K is capped for the app, and the setting is
    refused with a sentence saying what it asked for, before a single step is computed."""
    link = {"view": "playground", "opts": "adamezo", "steps": "5000", "repeats": "20",
            "adamezo.horizon": "1000000000"}
    at = open_link("playground", link, counted)
    assert [e.value for e in at.exception] == []
    warnings = [text(w) for w in at.warning]
    assert any("adamezo.horizon='1000000000' is too large for the app; allowed: an integer >= 1 and at most 200"
               in w for w in warnings)
    errors = [text(e) for e in at.error]
    assert len(errors) == 1 and errors[0].startswith("This setting asks for about 165,000 optimizer steps of "
                                                     "computing (5000 steps × 20 seed(s) × 1 optimizer(s)); "
                                                     "the app does at most 5,000 per change.")
    assert counted["work"] == 0 and charts(at) == []
    # Within the cap, K is paid for: 1 + 0.065 × 200 MeZO steps a step.
    link = {"view": "playground", "opts": "adamezo", "steps": "20", "repeats": "1", "adamezo.horizon": "200"}
    at = open_link("playground", link, counted)
    assert [text(e) for e in at.error] == [] and counted["work"] == pytest.approx(20 * (1 + 0.065 * 200))


def test_a_compare_sweep_of_the_horizon_is_bounded(counted):
    link = {"view": "compare", "opt": "adamezo", "param": "horizon", "values": "10, 1000000000", "steps": "50"}
    at = open_link("compare", link, counted)
    assert [e.value for e in at.exception] == []
    assert any("horizon='1000000000' is too large for the app" in text(e) for e in at.error)
    link = {"view": "compare", "opt": "adamezo", "param": "horizon",
            "values": "200, 190, 180, 170, 160, 150, 140, 130", "steps": "5000", "repeats": "20"}
    at = open_link("compare", link, counted)
    assert any(text(e).startswith("This setting asks for about") for e in at.error)
    assert counted["work"] == 0


def test_markdown_in_a_link_is_shown_as_text():
    """The issue's link: a clickable 'Session expired' link and an external image in a warning."""
    at = open_link("playground", {"view": "playground", "opts": "mezo", "steps": HOSTILE[0], "seed": HOSTILE[1],
                                  "repeats": "1"})
    assert [e.value for e in at.exception] == []
    bodies = [w.value for w in at.warning]
    assert len(bodies) == 2
    for body in bodies:
        assert links_in(body) == []
    assert "steps='**[Session expired](https://evil.example/login)**' is not an integer" in text(at.warning[0])
    assert "seed='![x](https://evil.example/t.png)' is not an integer" in text(at.warning[1])


def test_extreme_domains_and_unusable_starts_are_sentences(counted):
    link = {"view": "playground", "ls": "custom", "expr": "x**2 + y**2", "dx0": "-1e6", "dx1": "1e6", "dy0": "-1",
            "dy1": "1", "opts": "mezo", "steps": "5", "repeats": "1"}
    at = open_link("playground", link, counted)
    assert [e.value for e in at.exception] == []
    assert [text(e) for e in at.error] == [
        "The landscape could not be built: the domain is 2e+06 wide and 2 tall; allowed: width and height within "
        "a factor 100 of each other"]
    link = {"view": "playground", "ls": "custom", "expr": "log(x + 3) + y**2", "x0": "-3.5", "y0": "0",
            "opts": "mezo,adam", "steps": "5", "repeats": "1", "fair": "path"}
    at = open_link("playground", link, counted)
    assert [e.value for e in at.exception] == []
    errors = [text(e) for e in at.error]
    assert errors and all("the loss at the start (-3.5, 0) is not finite" in e for e in errors)


def _values(page: str) -> list[str]:
    fields = {"playground": controls.playground_fields, "compare": controls.compare_fields}.get(page)
    keys = [f.key for f in fields()] if fields else []
    extra = {"lessons": ["lesson", "seed", "seeds"], "llm": ["opts", "steps", "model", "data", "device", "dtype",
                                                             "seed", "batch", "eval", "lr", "task", "x", "smooth",
                                                             "mem"]}.get(page, [])
    return sorted(set(keys + extra + ["view", "junk"]))


#: Six fixed examples a page in the suite; ``ADAMEZO_LINK_EXAMPLES=N`` explores N random ones a page.
LINK_EXAMPLES = int(os.environ.get("ADAMEZO_LINK_EXAMPLES", "6"))
EXPLORE = "ADAMEZO_LINK_EXAMPLES" in os.environ


@pytest.mark.parametrize("page", list(PAGES))
def test_random_links_never_crash_never_render_a_link_and_never_exceed_the_budget(page, counted):
    keys = _values(page)
    value = hs.one_of(hs.sampled_from(HOSTILE), hs.text(max_size=24),
                      hs.integers(-10**12, 10**12).map(str), hs.floats().map(repr))

    @settings(max_examples=LINK_EXAMPLES, deadline=None, derandomize=not EXPLORE,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(hs.dictionaries(hs.sampled_from(keys), value, max_size=6))
    def probe(params):
        at = open_link(page, {"view": page} | params, counted)
        assert [e.value for e in at.exception] == [], params
        for element in [*at.error, *at.warning, *at.caption, *at.info]:
            assert "Traceback" not in element.value
            assert not [u for u in links_in(element.value) if "evil" in u], (params, element.value)
        assert counted["work"] <= 5000 + 100, params  # + the ≤ 30-step path of lesson 6

    probe()


@pytest.mark.parametrize("page, link, expect", [
    # Six optimizers matched to Adam's path at 5000 steps: the matching alone is ~25 runs each.
    ("playground", {"opts": "mezo,adamezo,zo-adam,hizoo,adam,adamw", "fair": "path", "steps": "5000",
                    "repeats": "1"}, "error:This setting asks for about 1,207,500 optimizer steps"),
    # Three optimizers × eight values × 20 seeds × 5000 steps on the Compare page.
    ("compare", {"opt": "mezo,adamezo,zo-adam", "param": "lr", "values": "1,2,3,4,5,6,7,8", "steps": "5000",
                 "repeats": "20"}, "error:This setting asks for about 3,320,000 optimizer steps"),
    # A start a million units away: drawn clipped, said to be outside, no traceback.
    ("playground", {"opts": "adam", "x0": "1000000", "y0": "-1000000", "steps": "5", "repeats": "1"},
     "warning:Adam (first order) starts outside the plotted domain, at (1e+06, -1e+06)"),
    # lr = 1e308 per value: every run diverges at once and says so.
    ("compare", {"opt": "adamezo", "param": "betas", "values": "0.7/0.9, 0/0", "lrs": "1e308, 1e308",
                 "steps": "50"}, "warning:betas = 0.7/0.9 diverged at step 1"),
    # A formula whose grid overflows everywhere but at the start.
    ("playground", {"ls": "custom", "expr": "exp(exp(exp(x)))", "colour": "log", "opts": "mezo", "steps": "20",
                    "repeats": "1"}, None),
    # The largest seed and the most seeds of the moments lesson.
    ("lessons", {"lesson": "rebuild", "seed": "1000000", "seeds": "16"}, None),
])
def test_hostile_links_of_our_own(page, link, expect, counted):
    at = open_link(page, {"view": page} | link, counted)
    assert [e.value for e in at.exception] == []
    assert counted["work"] <= 5000 + 100
    if expect:
        kind, message = expect.split(":", 1)
        shown = [text(e) for e in (at.error if kind == "error" else at.warning)]
        assert any(s.startswith(message) for s in shown), shown
