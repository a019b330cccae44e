"""Cold start to first picture: a fresh ``streamlit run app/main.py`` and a first browser visit.

    python benchmarks/app_first_picture.py [--repeats 5]

Each repeat starts a new Streamlit server (so nothing is cached or imported yet, the app's worker
pool included), waits for its health check, opens the landing view (the Playground, ``/``) in Debian's
chromium (headless, 1440 x 900), and times from the navigation to (1) the page's title and (2) the
first chart drawn: a ``.zo-chart`` with a figure (``data-revision``) that has finished drawing (no
``data-drawing``), the clock the browser test uses, and (3) every seed's results: the script has
finished, no "being computed" note is left and the metrics table is there. Prints every time, the
medians and the 1-minute load average before each repeat, as these shared machines are noisy.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

#: The page is done: every seed computed and drawn (no first-pass or stored-picture note left).
DONE = """() => {
    const app = document.querySelector('[data-testid="stApp"]');
    return app && app.dataset.testScriptState === "notRunning" && !document.body.innerText.includes("being computed")
        && document.querySelectorAll("table").length > 0;
}"""

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "app"))

import test_app_browser as B  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="cold starts (default 5, at most 20)")
    n = max(1, min(parser.parse_args().repeats, 20))
    from playwright.sync_api import sync_playwright

    titles, charts, done = [], [], []
    for rep in range(n):
        load = os.getloadavg()[0]
        proc, url = B.start_server()
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=B.CHROMIUM, args=B.ARGS, headless=True)
                page = browser.new_page(viewport={"width": 1440, "height": 900})
                t0 = time.perf_counter()
                page.goto(url + "/", timeout=120_000)
                page.wait_for_selector("h1", timeout=120_000)
                titles.append(time.perf_counter() - t0)
                page.wait_for_selector(".zo-chart[data-revision]:not([data-drawing])", timeout=240_000)
                charts.append(time.perf_counter() - t0)
                page.wait_for_function(DONE, timeout=240_000, polling=50)
                done.append(time.perf_counter() - t0)
                browser.close()
        finally:
            B.stop_server(proc)
        print(f"repeat {rep + 1}/{n}: load {load:.1f}, title {titles[-1]:.2f} s, "
              f"first chart {charts[-1]:.2f} s, all seeds {done[-1]:.2f} s", flush=True)
    print(f"median of {n}: title {statistics.median(titles):.2f} s, "
          f"first chart {statistics.median(charts):.2f} s, all seeds {statistics.median(done):.2f} s")


if __name__ == "__main__":
    main()
