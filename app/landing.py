"""The Playground's landing picture, stored, so that a first visit sees it before torch is imported.

A cold start spends most of its first seconds importing torch (and ``torch._dynamo``, which the first
``torch.optim.Optimizer`` pulls in) before the first run can be computed. The landing view (the
Playground with no link parameters) is always the same setting, so its first picture (the first seed,
as the progressive first pass draws it) is stored in ``landing_snapshot.json`` and shown at once. The
page then imports, computes every seed and draws the live charts in its place; every number the page
states (the table, the verdicts) comes from that live run.

The stored picture is used only when its fingerprint matches: the versions of torch, numpy and plotly
and the bytes of every file that shapes the picture (``optimizers/``, ``landscapes/``, ``app/*.py`` and
the lessons' learning rates). ``tests/app/test_landing.py`` checks that the stored picture equals what
the page draws without it, item for item. After a change to any of those files:

    python -m app.landing build        # recompute the stored picture (runs the page once, ~11 s)

This module imports neither torch nor the app's other modules: it runs before them.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SNAPSHOT = Path(__file__).with_name("landing_snapshot.json")
#: The component key of the stored picture (the live charts are ``playground:chart``).
KEY = "playground:landing"
#: Set to ``off`` to draw the landing view without the stored picture (``build`` does).
ENV = "ADAMEZO_LANDING"
#: Link parameters that do not change the picture.
NEUTRAL_PARAMS = frozenset({"present"})
_SHOWN = "landing:shown"


def _sources() -> list[Path]:
    files = [p for folder in ("optimizers", "landscapes") for p in sorted((ROOT / folder).rglob("*.py"))]
    return files + sorted((ROOT / "app").glob("*.py")) + [ROOT / "app" / "lesson_lrs.json"]


def fingerprint() -> str:
    """What the landing picture depends on: package versions and the bytes of the sources."""
    h = hashlib.sha256()
    for dist in ("torch", "numpy", "plotly"):
        h.update(f"{dist}=={importlib.metadata.version(dist)}\n".encode())
    for path in _sources():
        h.update(path.relative_to(ROOT).as_posix().encode() + b"\n")
        h.update(path.read_bytes())
    return h.hexdigest()


@functools.cache
def stored() -> dict[str, Any] | None:
    """The stored picture if it matches this installation, else None (missing, unreadable or stale).
    Read and fingerprinted once per server process."""
    try:
        data = json.loads(SNAPSHOT.read_text())
        return data if data.get("fingerprint") == fingerprint() else None
    except (OSError, ValueError, AttributeError):
        return None


def show(notes_slot: Any) -> Any | None:
    """On a session's first run of the landing view, draw the stored picture (its landscape line in
    ``notes_slot``, its message and charts below) and return the placeholder that holds them, for the
    page to clear when the live charts come; otherwise draw nothing and return None."""
    import streamlit as st

    from app import chart

    first = _SHOWN not in st.session_state
    st.session_state[_SHOWN] = True
    if (not first or os.environ.get(ENV, "").strip().lower() == "off"
            or set(st.query_params.keys()) - NEUTRAL_PARAMS):
        return None
    data = stored()
    if data is None:
        return None
    notes_slot.markdown(data["notes"])
    holder = st.empty()
    with holder.container():
        st.info(data["message"])
        chart.show_items(data["items"], key=KEY)
    return holder


def build() -> dict[str, Any]:
    """Run the landing view once without the stored picture and keep what its first pass draws."""
    before = os.environ.get(ENV)
    os.environ[ENV] = "off"
    try:
        return _build()
    finally:
        if before is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = before


def _build() -> dict[str, Any]:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from streamlit.testing.v1 import AppTest

    from app import chart, compute, views

    compute.RUNS.clear()  # as on a fresh server: the first pass is drawn only while runs are missing
    captured: list[list[dict[str, Any]]] = []
    seeds: list[tuple[int, int]] = []
    real, real_message = chart.plotly_charts, views.first_pass_message

    def spy(figures, *, key, configs=None, basis=None, clickable=False, titles=None):
        if key == "playground:chart" and not captured:
            captured.append(chart.chart_items(figures, configs, basis, titles))
        return real(figures, key=key, configs=configs, basis=basis, clickable=clickable, titles=titles)

    def message(seed, repeats):
        seeds.append((seed, repeats))
        return real_message(seed, repeats)

    chart.plotly_charts, views.first_pass_message = spy, message
    try:
        at = AppTest.from_file(str(ROOT / "app" / "main.py"), default_timeout=300).run()
    finally:
        chart.plotly_charts, views.first_pass_message = real, real_message
    if at.exception or not captured or len(seeds) != 1:
        raise RuntimeError(f"the landing view did not draw a first pass: {list(at.exception)}")
    notes = next(m.value for m in at.markdown if m.value.startswith("**"))
    (seed, repeats), = seeds
    return {"fingerprint": fingerprint(), "notes": notes, "items": captured[0],
            "message": f"Showing seed {seed} from a stored run of this setting (the tests check that it equals a "
                       f"fresh one); all {repeats} seeds are being computed…"}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args != ["build"]:
        print("usage: python -m app.landing build", file=sys.stderr)
        return 2
    data = build()
    SNAPSHOT.write_text(json.dumps(data, indent=0, sort_keys=True) + "\n")
    size = SNAPSHOT.stat().st_size
    print(f"wrote {SNAPSHOT.relative_to(ROOT)} ({size / 1e3:.0f} KB, fingerprint {data['fingerprint'][:12]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
