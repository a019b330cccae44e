"""Real-browser smoke test: Debian's chromium drives ``streamlit run app/main.py``.

It loads the app, checks the playground's contour is drawn, presses ▶ Play and checks the contour is
still there (the Plotly ``redraw: False`` trap), switches through every page, checks no exception or
error element appears, and measures the re-render time after changing controls with three
optimizers and 500 steps: colour scale, seed (new and seen before), one lr, steps, and a click on the
contour that moves the start (printed; run with ``-s`` to see it).
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [pytest.mark.browser, pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                                      reason=f"{CHROMIUM} is absent (CI installs Debian's chromium)")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(env: dict | None = None) -> tuple[subprocess.Popen, str]:
    """``streamlit run app/main.py`` on a free localhost port; returns the process and its URL once
    the health check answers (``RuntimeError`` after 60 s). Also used by ``benchmarks/app_browser.py``."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app/main.py", "--server.headless", "true",
         "--server.port", str(port), "--server.address", "localhost", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"http://localhost:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                return proc, url
        except OSError:
            time.sleep(0.3)
    stop_server(proc)
    raise RuntimeError("streamlit did not start within 60 s")


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    env = dict(os.environ, ADAMEZO_RUNS_DIR=str(tmp_path_factory.mktemp("runs")))
    try:
        proc, url = start_server(env)
    except RuntimeError as exc:
        pytest.fail(str(exc))
    yield url
    stop_server(proc)


def wait_idle(page, timeout=90_000) -> None:
    """Wait until the script has finished running and the charts are drawn."""
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=timeout)
    page.wait_for_timeout(150)
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=timeout)


def assert_no_errors(page) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0
    assert page.locator('[data-testid="stAlertContentError"]').count() == 0


def contour_paths(page) -> int:
    """Landscape background images drawn in the first chart (the contour)."""
    return page.locator(".js-plotly-plot").first.locator(".imagelayer image").count()


WATCH = """() => {
    const app = document.querySelector('[data-testid="stApp"]');
    // Charts drawn by app/chart.py stay mounted and carry data-drawing until the figure is drawn.
    const done = () => window.__sawRun && app.getAttribute('data-test-script-state') === 'notRunning' &&
        document.querySelectorAll('.js-plotly-plot .imagelayer image').length > 0 &&
        document.querySelectorAll('.zo-chart[data-drawing]').length === 0;
    window.__sawRun = false;
    window.__t0 = performance.now();
    window.__t1 = null;
    window.__log = [];
    if (window.__watch) window.__watch.disconnect();
    // The clock starts at the user's last key press or pointer press before the script runs (what
    // the user waits from), not when the test driver starts typing.
    if (!window.__input) {
        window.__input = () => { if (!window.__sawRun) window.__t0 = performance.now(); };
        document.addEventListener('keydown', window.__input, true);
        document.addEventListener('pointerdown', window.__input, true);
    }
    window.__watch = new MutationObserver(() => {
        const state = app.getAttribute('data-test-script-state');
        window.__log.push([state, Math.round(performance.now() - window.__t0)]);
        if (state === 'running') window.__sawRun = true;
    });
    window.__watch.observe(app, {attributes: true, attributeFilter: ['data-test-script-state']});
    // Done on the first of two animation frames in a row where it holds (a component draws in an
    // effect that can run just after the frame where the script state changed).
    let first = null;
    const frame = () => {
        if (!done()) first = null;
        else if (first === null) first = performance.now();
        else { window.__t1 = first; return; }
        requestAnimationFrame(frame);
    };
    requestAnimationFrame(frame);
}"""


def rerender(page, action, timeout=90_000) -> float:
    """Seconds from a control change (the key or pointer press) until the script has run and the
    contour is drawn again, measured in the page: the first of two animation frames in a row where the
    script has finished and no chart is still drawing its new figure (``data-drawing``)."""
    page.evaluate(WATCH)
    action()
    page.wait_for_function("() => window.__t1 !== null", timeout=timeout, polling=20)
    elapsed = page.evaluate("(window.__t1 - window.__t0) / 1000")
    print("  script states (ms after the change):", page.evaluate("window.__log"))
    return elapsed


def click_contour(page, u: float, v: float) -> None:
    """Click the contour's plot area at fraction ``u`` of its width from the left and ``v`` of its
    height from the top."""
    box = page.locator(".zo-chart .nsewdrag").first.bounding_box()
    page.mouse.click(box["x"] + u * box["width"], box["y"] + v * box["height"])


def test_app_in_a_real_browser(server):
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1500, "height": 1000})
        page.goto(f"{server}/?view=playground&opts=mezo,adamezo,adam&steps=500&repeats=1", timeout=60_000)
        page.wait_for_selector(".js-plotly-plot .imagelayer image", state="attached", timeout=120_000)
        wait_idle(page)
        assert_no_errors(page)
        assert contour_paths(page) == 1
        chart = page.locator(".js-plotly-plot").first
        traces = chart.locator(".scatterlayer .trace").count()
        assert traces >= 13  # colour bar, minima, start, per path a legend entry, outline, line and head, ✕
        clocks = "[...document.querySelectorAll('.zo-chart')].map(g => Number(g.getAttribute('data-clock')))"
        assert page.evaluate(clocks) == [500, 500]  # sent at its last step; the loss cursor follows

        # Play from the end starts again at 0 and the trails grow; Pause keeps the step; Play continues
        # from it; the loss plot's cursor is at the contour's step throughout.
        play = page.locator(".zo-play").first
        play.click()
        page.wait_for_timeout(1200)
        play.click()  # pause
        paused = page.evaluate(clocks)
        assert 0 < paused[0] < 500 and paused[1] == paused[0]
        assert page.locator(".zo-clock").first.inner_text() == f"step {paused[0]} / 500"
        trail = page.evaluate("document.querySelector('.zo-chart')._fullData"
                              ".find(t => t.name === 'MeZO' && t.mode === 'lines').x.length")
        assert trail == paused[0] + 1  # the path up to the current step, not the whole path
        page.wait_for_timeout(600)
        assert page.evaluate(clocks) == paused  # paused means paused
        play.click()
        page.wait_for_timeout(500)
        resumed = page.evaluate(clocks)
        assert paused[0] < resumed[0] < 500 and resumed[1] == resumed[0]  # continued, not restarted
        play.click()
        page.locator(".zo-speed").first.select_option("4")  # the speed menu
        scrub = page.locator(".zo-scrub").first
        scrub.fill("500")  # the slider scrubs (to the end again)
        assert page.evaluate(clocks) == [500, 500]
        assert contour_paths(page) == 1 and chart.locator(".scatterlayer .trace").count() == traces
        assert_no_errors(page)

        # Re-render after changing controls, three optimizers and 500 steps: the median of three
        # changes of each kind (each change is a full script run, as Streamlit does for any widget),
        # once the app's worker processes (started after the first page) are up.
        page.wait_for_timeout(8_000)
        unmounted = page.evaluate("window.__zoCleanups || 0")  # charts removed from the page so far
        times: dict[str, list[float]] = {"colour": [], "seed": [], "cached": []}
        for mode in ("linear", "log", "auto"):
            times["colour"].append(rerender(page, lambda: page.get_by_text(mode, exact=True).first.click()))
        assert_no_errors(page)
        # The charts stay mounted: the same DOM nodes, updated in place, after a change.
        page.evaluate("document.querySelectorAll('.zo-chart').forEach(c => { c.__kept = true; })")
        revision = chart.get_attribute("data-revision")
        rerender(page, lambda: page.get_by_text("linear", exact=True).first.click())
        assert page.evaluate("[...document.querySelectorAll('.zo-chart')].map(c => c.__kept === true)") == [True, True]
        assert chart.get_attribute("data-revision") != revision  # and the contour shows the new figure
        rerender(page, lambda: page.get_by_text("auto", exact=True).first.click())
        seed_box = page.locator('[data-testid="stNumberInput"] input').nth(3)  # start x, start y, steps, seed
        for new_seed, kind in ((1, "seed"), (2, "seed"), (3, "seed"), (1, "cached"), (2, "cached"), (0, "cached")):
            times[kind].append(rerender(page, lambda: (seed_box.fill(str(new_seed)), seed_box.press("Enter"))))
            assert_no_errors(page)
        # One optimizer's lr, one notch of its slider (one new trajectory).
        page.locator('[data-testid="stSidebar"] summary').filter(has_text="AdaMeZO").first.click()
        lr_slider = page.locator('.st-key-playground-adamezo-lr input[type="range"]').first
        lr_slider.wait_for(state="attached", timeout=10_000)
        times["lr"] = []
        for key in ("ArrowRight", "ArrowRight", "ArrowLeft"):
            before = page.url
            times["lr"].append(rerender(page, lambda: (lr_slider.focus(), lr_slider.press(key))))
            assert page.url != before and "adamezo.lr=" in page.url  # the setting changed and is in the link
            assert_no_errors(page)
        # Dragging pans the contour and does not move the start.
        box = page.locator(".zo-chart .nsewdrag").first.bounding_box()
        before = page.url
        page.mouse.move(box["x"] + 0.4 * box["width"], box["y"] + 0.4 * box["height"])
        page.mouse.down()
        page.mouse.move(box["x"] + 0.5 * box["width"], box["y"] + 0.5 * box["height"], steps=5)
        page.mouse.up()
        page.wait_for_timeout(800)
        wait_idle(page)
        assert page.url == before
        page.locator(".zo-chart .modebar-btn[data-title='Reset axes']").first.click()
        # Steps (three new trajectories, Adam's included) and a click on the contour (a new start).
        steps_box = page.locator('[data-testid="stNumberInput"] input').nth(2)
        times["steps"] = [rerender(page, lambda: (steps_box.fill(str(n)), steps_box.press("Enter")))
                          for n in (490, 480, 500)]
        assert_no_errors(page)
        times["start"] = []
        for u, v in ((0.7, 0.3), (0.25, 0.65), (0.5, 0.5)):
            # Where the click lands, in the contour's data coordinates (Plotly's own axis mapping).
            want = page.evaluate("""([u, v]) => {
                const gd = document.querySelector('.zo-chart'), full = gd._fullLayout;
                const box = gd.querySelector('.nsewdrag').getBoundingClientRect();
                return [full.xaxis.p2l(u * box.width), full.yaxis.p2l(v * box.height)];
            }""", [u, v])
            times["start"].append(rerender(page, lambda: click_contour(page, u, v)))
            assert_no_errors(page)
            query = dict(p.split("=", 1) for p in page.url.split("?", 1)[1].split("&"))
            assert float(query["x0"]) == pytest.approx(want[0], abs=0.02)  # the clicked point is the new start
            assert float(query["y0"]) == pytest.approx(want[1], abs=0.02)
            start = page.evaluate("""() => { const t = document.querySelector('.zo-chart')._fullData
                                               .find(t => t.name === 'start'); return [t.x[0], t.y[0]]; }""")
            assert start == pytest.approx([float(query["x0"]), float(query["y0"])])
        # No chart was unmounted by any of these changes (messages go into one container before them).
        assert page.evaluate("window.__zoCleanups || 0") == unmounted
        median = {k: statistics.median(v) for k, v in times.items()}
        print(f"\nre-render after a control change (3 optimizers, 500 steps), median of 3 each: "
              f"colour scale {median['colour']:.2f} s, back to a seed seen before {median['cached']:.2f} s, "
              f"AdaMeZO lr (1 new trajectory) {median['lr']:.2f} s, new seed (2 new ZO trajectories; "
              f"Adam's run does not depend on the seed) {median['seed']:.2f} s, steps (3 new trajectories) "
              f"{median['steps']:.2f} s, a click on the contour (new start, 3 new trajectories) "
              f"{median['start']:.2f} s")
        assert page.url.find("seed=0") > 0

        # The 3-D surface, in its own tab: drawn at the tab's full width once the tab is shown.
        page.get_by_text("3-D surface too", exact=True).click()
        wait_idle(page)
        page.get_by_role("tab", name="3-D surface").click()
        surface = page.locator(".zo-chart").nth(2)
        surface.locator(".gl-container canvas, canvas").first.wait_for(state="attached", timeout=30_000)
        page.wait_for_timeout(500)
        # Plotly drew it at the tab's width (not its 700 px default for a hidden, zero-width chart).
        drawn = page.evaluate("document.querySelectorAll('.zo-chart')[2]._fullLayout.width")
        assert abs(drawn - surface.bounding_box()["width"]) <= 2 and drawn > 800
        assert page.evaluate("document.querySelectorAll('.zo-chart')[2]._fullData[0].type") == "surface"
        # It follows the contour's clock (the player is in the other tab: drive it from here).
        page.evaluate("window.dispatchEvent(new CustomEvent('zo-clock', "
                      "{detail: {channel: 'playground', clock: 123}}))")
        assert page.evaluate("document.querySelectorAll('.zo-chart')[2].getAttribute('data-clock')") == "123"
        assert_no_errors(page)

        # Every page, through the navigation.
        for title in ("Compare", "Lessons", "LLM fine-tune", "Playground"):
            page.locator('[data-testid="stSidebarNav"] a', has_text=title).first.click()
            page.wait_for_timeout(300)
            wait_idle(page)
            assert_no_errors(page)
            if title in ("Compare", "Lessons", "Playground"):
                page.wait_for_selector(".js-plotly-plot", timeout=60_000)
            if title == "LLM fine-tune":
                page.wait_for_selector("text=Start runs", timeout=30_000)
        browser.close()


def test_markdown_from_a_link_is_shown_as_text(server):
    """The issue's hostile link: no clickable link and no external image in the page, the text as typed."""
    playwright = pytest.importorskip("playwright.sync_api")
    steps = "**[Session expired](https://evil.example/login)**"
    seed = "![x](https://evil.example/t.png)"
    from urllib.parse import quote, urlparse

    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1024, "height": 768})
        requested = []
        page.on("request", lambda r: requested.append(r.url))
        page.goto(f"{server}/?view=playground&opts=mezo&repeats=1&steps={quote(steps)}&seed={quote(seed)}",
                  timeout=60_000)
        page.wait_for_selector('[data-testid="stAlertContentWarning"]', timeout=60_000)
        wait_idle(page)
        alerts = page.locator('[data-testid="stAlertContentWarning"]')
        shown = " ".join(alerts.all_inner_texts()).replace("\u2060", "")  # app.text.plain's word joiners
        assert f"steps='{steps}' is not an integer" in shown and f"seed='{seed}' is not an integer" in shown
        assert alerts.locator("a").count() == 0 and alerts.locator("img").count() == 0
        assert page.locator('a[href*="evil.example"], img[src*="evil.example"]').count() == 0
        assert not [u for u in requested if urlparse(u).hostname == "evil.example"]  # no image fetched
        browser.close()


OVERLAPS = """() => {
  // Every chart's visible text boxes (titles, legend entries, axis titles, tick labels, annotations): the
  // pairs that intersect by more than 1 px both ways, and the smallest font size.
  return [...document.querySelectorAll('.zo-chart')].map((gd) => {
    const boxes = [];
    gd.querySelectorAll('svg text').forEach((t) => {
      const s = (t.textContent || '').trim();
      const cs = getComputedStyle(t), r = t.getBoundingClientRect();
      if (!s || cs.visibility === 'hidden' || cs.display === 'none' || r.width < 1 || r.height < 1) return;
      boxes.push({s, r, size: parseFloat(t.style.fontSize || cs.fontSize)});
    });
    const pairs = [];
    for (let i = 0; i < boxes.length; i++) for (let j = i + 1; j < boxes.length; j++) {
      const a = boxes[i].r, b = boxes[j].r;
      if (Math.min(a.right, b.right) - Math.max(a.left, b.left) > 1 &&
          Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top) > 1) pairs.push([boxes[i].s, boxes[j].s]);
    }
    return {texts: boxes.length, minFont: Math.min(...boxes.map((b) => b.size)), overlaps: pairs};
  });
}"""
PAGES = [("playground", "?view=playground"), ("compare", "compare?view=compare"),
         ("lessons", "lessons?view=lessons&lesson=rebuild"), ("llm", "llm?view=llm")]


def test_every_page_fits_a_projector_and_no_chart_text_overlaps(server):
    """At 1024 × 768 and 1440 × 900, normally and in presentation mode: nothing scrolls sideways, no two
    texts of a chart overlap, chart text is at least 12 px (16 px when presenting), and presentation mode
    folds the sidebar away and stays in the link."""
    playwright = pytest.importorskip("playwright.sync_api")
    from app.chart import FONT_PX

    seen = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        for width, height in ((1024, 768), (1440, 900)):
            for present in (0, 1):
                page = browser.new_page(viewport={"width": width, "height": height})
                for name, target in PAGES:
                    page.goto(f"{server}/{target}&present={present}", timeout=120_000)
                    page.wait_for_timeout(1000)
                    wait_idle(page, timeout=240_000)
                    if name != "llm":
                        page.wait_for_selector(".zo-chart:not([data-drawing])", timeout=120_000)
                    page.wait_for_timeout(500)
                    assert_no_errors(page)
                    main = page.evaluate("(() => { const m = document.querySelector('[data-testid=stMain]');"
                                         " return [m.scrollWidth, m.clientWidth]; })()")
                    assert main[0] <= main[1], (name, width, present, main)
                    for chart in page.evaluate(OVERLAPS):
                        if not chart["texts"]:
                            continue
                        assert chart["overlaps"] == [], (name, width, present, chart["overlaps"])
                        assert chart["minFont"] >= (16 if present else 12), (name, width, present, chart)
                        assert chart["minFont"] == FONT_PX[present]
                    if present:
                        assert "present=1" in page.url
                        assert page.locator('[data-testid="stSidebar"]').get_attribute("data-collapsed") == "true"
                    seen.append((name, width, present))
                page.close()
        browser.close()
    assert len(seen) == 16
