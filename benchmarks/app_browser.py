"""End-to-end re-render time of the Playground in Chromium, many changes of each kind.

    python benchmarks/app_browser.py [--repeats 8]

Starts ``streamlit run app/main.py``, opens the Playground with three optimizers (MeZO, AdaMeZO,
Adam) and 500 steps in Debian's chromium (headless), waits 10 s for the app's worker processes, and
times each change in the page, from the key or pointer press to the first animation frame where the
script has finished and every chart has drawn its new figure (the clock of the browser
test, ``tests/app/test_app_browser.py``, whose helpers this uses). Prints the median and every time
for: a new seed (two new ZO trajectories), a seed seen before (cached), the colour scale (display
only), the number of steps and a click on the contour (three new trajectories each), and one
optimizer's lr, new and seen before. The browser test takes three changes of each kind; this takes
more, as the times on a shared 2-core machine vary by ±30 %.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "app"))

import test_app_browser as B  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=8, help="changes of each kind (default 8)")
    n = max(2, min(parser.parse_args().repeats, 12))
    from playwright.sync_api import sync_playwright

    server, url = B.start_server()
    try:
        def timed(page, action) -> float:
            with contextlib.redirect_stdout(io.StringIO()):  # the helper prints the script states
                return B.rerender(page, action)

        times: dict[str, list[float]] = {}
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=B.CHROMIUM, args=B.ARGS, headless=True)
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            page.goto(f"{url}/?view=playground&opts=mezo,adamezo,adam&steps=500&repeats=1", timeout=60_000)
            page.wait_for_selector(".js-plotly-plot .imagelayer image", state="attached", timeout=120_000)
            B.wait_idle(page)
            # The app starts its worker processes after the first page (~5 s here): time the changes a
            # user makes once they are up.
            page.wait_for_timeout(10_000)
            boxes = page.locator('[data-testid="stNumberInput"] input')  # start x, start y, steps, seed
            seed, steps = boxes.nth(3), boxes.nth(2)
            enter = lambda box, v: (box.fill(str(v)), box.press("Enter"))  # noqa: E731
            for v in (499, 500):  # two untimed changes first: the first runs of a process are slower
                timed(page, lambda: enter(steps, v))
            times["new seed (2 new ZO trajectories)"] = [timed(page, lambda: enter(seed, s)) for s in range(1, n + 1)]
            times["seed seen before (cached)"] = [timed(page, lambda: enter(seed, s)) for s in range(1, n + 1)]
            modes = ("linear", "log", "auto") * n
            times["colour scale (display only)"] = [
                timed(page, lambda: page.get_by_text(modes[i], exact=True).first.click()) for i in range(n)]
            times["steps (3 new trajectories)"] = [timed(page, lambda: enter(steps, 500 - 5 * i)) for i in range(1, n + 1)]
            points = [((i % 11 + 0.5) / 12, ((3 * i + 2) % 11 + 0.5) / 12) for i in range(1, n + 1)]
            times["click on the contour (new start, 3 new)"] = [
                timed(page, lambda: B.click_contour(page, u, v)) for u, v in points]
            page.locator('[data-testid="stSidebar"] summary').filter(has_text="AdaMeZO").first.click()
            lr = page.locator('.st-key-playground-adamezo-lr input[type="range"]').first
            lr.wait_for(state="attached", timeout=10_000)
            B.wait_idle(page)
            times["AdaMeZO lr (1 new trajectory)"] = [
                timed(page, lambda: (lr.focus(), lr.press("ArrowLeft"))) for _ in range(n)]
            times["AdaMeZO lr seen before (cached)"] = [
                timed(page, lambda: (lr.focus(), lr.press("ArrowRight"))) for _ in range(n)]
            browser.close()
    finally:
        B.stop_server(server)
    print(f"Playground re-render in Chromium, 3 optimizers x 500 steps, {n} changes of each kind (seconds):")
    for kind, ts in times.items():
        print(f"  {kind:42s} median {statistics.median(ts):.2f}   {' '.join(f'{t:.2f}' for t in ts)}")


if __name__ == "__main__":
    main()
