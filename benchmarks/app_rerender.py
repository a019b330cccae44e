"""Server-side re-render time of the Playground after a control change (three optimizers, 500 steps).

    python benchmarks/app_rerender.py

Runs the app under ``streamlit.testing.v1.AppTest`` (no browser) and times full script reruns after:
a display-only change (colour scale: every trajectory cached), the seed (two new ZO trajectories:
first-order Adam's run does not depend on it and stays cached), one optimizer's lr (one new
trajectory), the number of steps and the start point (three new trajectories each). The browser
benchmark (``python benchmarks/app_browser.py``) gives the end-to-end time in Chromium, which adds
the page's own drawing.
"""

from __future__ import annotations

import logging
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
logging.disable(logging.WARNING)

from streamlit.testing.v1 import AppTest  # noqa: E402

from app import compute  # noqa: E402


def timed(at, action, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        action(at)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    at = AppTest.from_file(str(ROOT / "app" / "main.py"), default_timeout=300)
    at.query_params.update({"view": "playground", "opts": "mezo,adamezo,adam", "steps": "500", "repeats": "1"})
    t0 = time.perf_counter()
    at.run()
    print(f"first run (imports, three 500-step trajectories): {time.perf_counter() - t0:.2f} s")
    # The app starts its worker processes after the first page; time the changes once they are up,
    # as a user would meet them a few seconds after opening the app.
    t0 = time.perf_counter()
    while not compute.POOL.ready() and time.perf_counter() - t0 < 120:
        time.sleep(0.1)
    print(f"worker processes up {time.perf_counter() - t0:.1f} s later: "
          f"{compute.POOL.ready()} (ADAMEZO_APP_PROCESSES={compute.processes()})")
    modes = iter(["linear", "log", "auto"] * 10)
    display = timed(at, lambda a: a.radio(key="playground:colour").set_value(next(modes)).run())
    seeds = iter(range(1, 12))
    seed = timed(at, lambda a: a.number_input(key="playground:seed").set_value(next(seeds)).run())
    lrs = iter([0.1, 0.2, 0.5, 1.0, 0.02, 0.01])  # values of the lr slider
    one = timed(at, lambda a: a.select_slider(key="playground:adamezo.lr").set_value(next(lrs)).run())
    steps = iter([490, 480, 470, 460, 450, 440])
    three = timed(at, lambda a: a.number_input(key="playground:steps").set_value(next(steps)).run())
    starts = iter([(0.5, 0.5), (-0.5, 1.5), (1.5, -0.5), (-1.0, -1.0), (0.0, 2.0), (1.0, 0.0)])

    def new_start(a):
        x, y = next(starts)
        a.number_input(key="playground:x0").set_value(x)
        return a.number_input(key="playground:y0").set_value(y).run()

    start = timed(at, new_start)
    print(f"re-render, display-only change (cached trajectories): {display:.2f} s")
    print(f"re-render, one optimizer's lr (1 new 500-step trajectory): {one:.2f} s")
    print(f"re-render, new seed (2 new 500-step ZO trajectories; Adam's does not depend on it): {seed:.2f} s")
    print(f"re-render, steps (3 new trajectories): {three:.2f} s")
    print(f"re-render, new start (3 new trajectories): {start:.2f} s")


if __name__ == "__main__":
    main()
