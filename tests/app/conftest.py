"""Shared helpers for the app tests: the repository root on sys.path, and AppTest page openers."""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
MAIN = str(ROOT / "app" / "main.py")


def decode(value):
    """A Plotly JSON array: plain list, or a typed array ``{"dtype", "bdata"}`` (plotly ≥ 6)."""
    if isinstance(value, dict) and "bdata" in value:
        arr = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        if "shape" in value:
            shape = value["shape"]
            shape = [int(s) for s in shape.split(",")] if isinstance(shape, str) else shape
            arr = arr.reshape(shape)
        return arr
    return np.asarray(value, dtype=object) if value is not None else None


def text(element) -> str:
    """What a message element shows: its body with the Markdown escapes of ``app.text.plain`` undone."""
    from app.text import unescape

    return unescape(element.value)


def charts(at) -> list[dict]:
    """The figures of every chart on the page (``app.chart`` components, several figures each), in page
    order. Every chart goes through that component: a plain ``st.plotly_chart`` would be remounted, and
    slow, on each rerun."""
    from app import chart

    assert len(at.get("plotly_chart")) == 0, "a chart bypasses app.chart.plotly_chart"
    return [fig for e in at.get("bidi_component") if e.proto.component_name == chart.NAME
            for fig in chart.figures_of(json.loads(e.proto.json))]


def chart_titles(at) -> list[str]:
    """The titles the chart components show above their figures, in page order."""
    from app import chart

    return [item["title"] for e in at.get("bidi_component") if e.proto.component_name == chart.NAME
            for item in json.loads(e.proto.json)["items"]]


def tables(at, first: str) -> list[dict[str, str]]:
    """Every Markdown table whose first column is ``first``, merged by that column: one dict of cell
    texts per row (the Playground splits its metrics over a main table and a "More metrics" one)."""
    merged: dict[str, dict[str, str]] = {}
    for m in at.markdown:
        if not m.value.startswith(f"| {first} |"):
            continue
        lines = m.value.splitlines()
        split = lambda line: [c.strip() for c in line.strip().strip("|").split(" | ")]  # noqa: E731
        header = split(lines[0])
        assert set(lines[1]) <= {"|", "-"}
        for line in lines[2:]:
            row = dict(zip(header, split(line)))
            merged.setdefault(row[first], {}).update(row)
    return list(merged.values())


def open_page(page: str | None, params: dict | None = None, timeout: float = 120, after_warmup=None):
    """Run the app at ``page`` (``app_pages/NAME.py``) with URL ``params``, as a link would open it.
    ``after_warmup()`` is called between AppTest's warm-up run and the page's own run."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(MAIN, default_timeout=timeout)
    if page is None:
        for k, v in (params or {}).items():
            at.query_params[k] = v
        return at.run()
    # AppTest needs one run before a page switch: make it a cheap one (one MeZO step).
    for k, v in {"view": "playground", "opts": "mezo", "steps": "1", "repeats": "1"}.items():
        at.query_params[k] = v
    at.run()
    if after_warmup is not None:
        after_warmup()
    at.switch_page(page)
    at.query_params.clear()
    for k, v in (params or {}).items():
        at.query_params[k] = v
    at.session_state["_page"] = ""  # a link opened in a new tab: the page reads the URL on arrival
    return at.run()


@pytest.fixture
def page():
    return open_page


def metrics_table(at) -> list[dict[str, str]]:
    """The Playground's metrics (its main table and its "More metrics" table, merged), one dict a row."""
    rows = tables(at, "optimizer")
    assert rows, "no metrics table"
    return rows


def ranking_table(at) -> list[dict[str, str]]:
    """The Compare page's ranking (a Markdown table), one dict of cell texts per row."""
    return tables(at, "rank")
