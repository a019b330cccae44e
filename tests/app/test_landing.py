"""The stored landing picture (``app.landing``): it is what the page's first pass draws without it, it
is shown on a session's first landing only, never for a link's setting or a stale fingerprint, and the
live charts replace it."""

from __future__ import annotations

import json

import pytest

from app import chart, landing
from conftest import charts, open_page


@pytest.fixture
def shown(monkeypatch):
    """The keys of every chart drawn from stored items (``chart.show_items``) in this test."""
    keys: list[str] = []
    real = chart.show_items

    def spy(items, *, key, clickable=False):
        keys.append(key)
        return real(items, key=key, clickable=clickable)

    monkeypatch.setattr(chart, "show_items", spy)
    landing.stored.cache_clear()
    yield keys
    landing.stored.cache_clear()  # a test's patched fingerprint must not stay cached


def test_the_stored_picture_is_current_and_equals_the_first_pass_drawn_without_it():
    data = json.loads(landing.SNAPSHOT.read_text())
    assert data["fingerprint"] == landing.fingerprint(), "stale stored picture: run python -m app.landing build"
    fresh = landing.build()
    assert fresh["items"] == data["items"]  # figure JSON, configs, widths and titles, byte for byte
    assert fresh == data
    assert len(data["items"]) == 2 and [i["title"] for i in data["items"]][1] == "Loss against forward passes"
    assert landing.SNAPSHOT.stat().st_size < 2_000_000  # the README's 2 MB rule for a figure's JSON


def test_a_first_landing_shows_it_and_the_live_charts_take_its_place(shown):
    at = open_page(None)
    assert not at.exception
    assert shown.count(landing.KEY) == 1
    ids = [e.proto.id for e in at.get("bidi_component")]
    assert [i.rsplit("-", 1)[-1] for i in ids if i.endswith((landing.KEY, "playground:chart"))] == ["playground:chart"]
    assert len(charts(at)) == 2  # the final page: the live contour and loss plot, the stored ones gone
    assert not any("stored run" in m.value for m in at.info)
    at.run()  # a rerun of the same session (any widget change): never again
    assert shown.count(landing.KEY) == 1


@pytest.mark.parametrize("params,used", [({"present": "1"}, True), ({"seed": "1"}, False),
                                         ({"ls": "rosenbrock"}, False)])
def test_only_a_link_without_a_setting_gets_it(shown, params, used):
    at = open_page(None, params)
    assert not at.exception
    assert (landing.KEY in shown) is used


def test_a_stale_fingerprint_is_never_shown(shown, monkeypatch):
    monkeypatch.setattr(landing, "fingerprint", lambda: "another installation")
    at = open_page(None)
    assert not at.exception and landing.KEY not in shown
    assert len(charts(at)) == 2
