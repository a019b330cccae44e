"""Plotly charts that stay mounted across reruns, lay themselves out, and animate runs in the browser.

Why not ``st.plotly_chart``: Streamlit (1.67) derives a chart's element id from the whole figure JSON,
even when a ``key`` is given, so any new figure is a new element and the browser unmounts the chart
and draws it from scratch (~0.4 s a rerun on the Playground, measured). This component keeps its
``<div>``s under a fixed key and hands each new figure to ``Plotly.react``, which updates what changed.

One component can hold several figures side by side (:func:`plotly_charts`): they sit in a wrapping
flex row, each at least ``basis`` pixels wide, so two charts share a wide page and stack on a narrow
one (a projector at 1024 × 768) without anything scrolling sideways. A chart's title is page text above
it (the figures carry none), so it never meets the legend, which sits above the plot.

Animation runs in the browser, not in Plotly frames: a figure whose ``layout.meta.zo_player`` lists
*tracks* (a trace, the trace holding its full data, and the clock value of every point) gets a player
bar below it (play/pause, speed, a step slider). Each tick slices every track to the current clock:
a ``trail`` shows the path up to it, a ``head`` the point at it. Figures with ``layout.meta.zo_follow``
(the loss plot's cursor, the 3-D view) follow the same clock, in this component or in another one on
the page (a ``zo-clock`` window event on the figure's ``zo_channel``). Pause keeps the clock; Play
continues from it (from the start once at the end). Each chart ``<div>`` carries ``data-clock``.

Presentation mode (``st.session_state["present"]``): chart text at 16 px, lines at least 3 px, and
charts side by side only when there are ~1200 px for them.

plotly.js itself is the copy that the installed ``plotly`` package ships (``plotly/package_data``);
Streamlit serves that folder as a static component path, and the page loads it once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import plotly
import plotly.io as pio
import streamlit as st
import streamlit.components.v1 as components_v1

PLOTLY_DIR = Path(plotly.__file__).parent / "package_data"
PLOTLY_JS = "plotly.min.js"
#: Chart text in pixels (normal, presentation); the browser test checks every chart text against these.
FONT_PX = (13, 16)
#: Narrowest width (px) of a chart in a row of charts, normally and in presentation mode.
PRESENT_BASIS = 600

_JS = r"""
function loadPlotly(src) {
  if (window.Plotly && window.Plotly.react) return Promise.resolve(window.Plotly);
  if (!window.__zoPlotly) {
    window.__zoPlotly = new Promise((resolve, reject) => {
      const s = document.createElement('script');
      s.src = src;
      s.onload = () => {
        if (window.Plotly && window.Plotly.react) { resolve(window.Plotly); return; }
        window.__zoPlotly = null;
        reject(new Error(src + ' loaded but defined no Plotly'));
      };
      s.onerror = () => { window.__zoPlotly = null; reject(new Error('could not load plotly.js from ' + src)); };
      document.head.appendChild(s);
    });
  }
  return window.__zoPlotly;
}

// The page's font and text colour (light or dark theme), transparent backgrounds, faint grid lines.
function pageTemplate(el, fontPx) {
  const cs = getComputedStyle(el);
  const rgb = (cs.color.match(/[\d.]+/g) || ['49', '51', '63']).slice(0, 3).join(',');
  const faint = 'rgba(' + rgb + ',0.15)';
  const axis = {gridcolor: faint, zerolinecolor: faint, linecolor: faint, automargin: true,
                exponentformat: 'e', tickfont: {size: fontPx}, title: {font: {size: fontPx}}};
  const scene = {gridcolor: faint, zerolinecolor: faint, backgroundcolor: 'rgba(0,0,0,0)', showbackground: false,
                 exponentformat: 'e', tickfont: {size: fontPx}};
  return {layout: {font: {family: cs.fontFamily, color: cs.color, size: fontPx},
                   paper_bgcolor: 'rgba(0,0,0,0)', plot_bgcolor: 'rgba(0,0,0,0)', xaxis: axis, yaxis: axis,
                   hovermode: 'closest', legend: {font: {size: fontPx}},
                   annotationdefaults: {font: {size: fontPx}},
                   scene: {xaxis: scene, yaxis: scene, zaxis: scene}}};
}

// Presentation mode: lines at least 3 px, markers a third larger, text at the presentation size.
function present(fig, fontPx) {
  for (const t of fig.data || []) {
    // Lines at least 3 px; not the outline of a filled band (width 0) nor a surface or contour.
    if (t.line && !t.fill && t.line.width !== 0 && t.type !== 'surface' && t.type !== 'contour') {
      t.line.width = Math.max(t.line.width || 2, 3);
    }
    if (t.marker && typeof t.marker.size === 'number') t.marker.size = Math.round(t.marker.size * 1.3);
    if (t.textfont && t.textfont.size) t.textfont.size = Math.max(t.textfont.size, fontPx);
  }
  for (const a of (fig.layout.annotations || [])) { a.font = Object.assign({}, a.font, {size: fontPx}); }
  if (fig.layout.title && fig.layout.title.font) fig.layout.title.font.size = fontPx + 2;
}

function indexOfClock(t, n, clock) {
  // The last point whose clock is <= clock (t null: the index is the clock).
  if (!t) return Math.max(0, Math.min(n - 1, Math.floor(clock)));
  let lo = 0, hi = Math.min(t.length, n) - 1;
  if (clock < t[0]) return 0;
  while (lo < hi) { const mid = (lo + hi + 1) >> 1; if (t[mid] <= clock) lo = mid; else hi = mid - 1; }
  return lo;
}

// Snapshot the full data of every track's source trace (the figure is sent at its last clock).
function snapshot(gd, tracks) {
  return tracks.map((tr) => {
    const src = gd._fullData[tr.source === undefined ? tr.trace : tr.source] || {};
    const arr = (v) => (v ? Array.from(v) : null);
    return {trace: tr.trace, mode: tr.mode, t: tr.t || null, x: arr(src.x), y: arr(src.y), z: arr(src.z)};
  });
}

function applyClock(Plotly, gd, clock) {
  const full = gd.__zoTracks;
  if (!full || !full.length) return;
  const upd = {x: [], y: [], z: []}, idx = [];
  let hasZ = false;
  for (const tr of full) {
    if (!tr.x) continue;
    const i = indexOfClock(tr.t, tr.x.length, clock);
    const cut = (a) => (tr.mode === 'head' ? [a[i]] : a.slice(0, i + 1));
    upd.x.push(cut(tr.x)); upd.y.push(cut(tr.y));
    if (tr.z) { upd.z.push(cut(tr.z)); hasZ = true; } else upd.z.push(undefined);
    idx.push(tr.trace);
  }
  if (!hasZ) delete upd.z;
  gd.__zoClock = clock;
  gd.setAttribute('data-clock', String(Math.floor(clock)));  // floor, like indexOfClock
  if (idx.length) Plotly.restyle(gd, upd, idx);
}

function fmtClock(meta, clock) {
  return (meta.label || 'step') + ' ' + Math.floor(clock) + ' / ' + Math.round(meta.clock_end);
}

// The player bar: play/pause, speed, a slider over the clock, and where it is.
function setupPlayer(Plotly, host, gd, meta, followers, channel) {
  let bar = host.querySelector('div.zo-player');
  if (!bar) {
    bar = document.createElement('div');
    bar.className = 'zo-player';
    bar.style.cssText = 'display:flex;flex-wrap:wrap;align-items:center;gap:8px 12px;margin:4px 0 8px 0;';
    bar.innerHTML = '<button type="button" class="zo-play" style="min-width:6.5em;padding:4px 12px;border-radius:6px;' +
      'border:1px solid rgba(128,128,128,0.5);background:transparent;color:inherit;font:inherit;cursor:pointer">' +
      '▶ Play</button>' +
      '<label style="display:flex;align-items:center;gap:6px">speed <select class="zo-speed" style="font:inherit;' +
      'color:inherit;background:transparent;border:1px solid rgba(128,128,128,0.5);border-radius:6px;padding:2px 4px">' +
      '<option value="0.25">¼×</option><option value="0.5">½×</option><option value="1" selected>1×</option>' +
      '<option value="2">2×</option><option value="4">4×</option></select></label>' +
      '<input type="range" class="zo-scrub" min="0" step="1" style="flex:1 1 160px;min-width:120px">' +
      '<span class="zo-clock" style="white-space:nowrap;font-variant-numeric:tabular-nums"></span>';
    host.appendChild(bar);
  }
  const play = bar.querySelector('.zo-play'), speed = bar.querySelector('.zo-speed');
  const scrub = bar.querySelector('.zo-scrub'), label = bar.querySelector('.zo-clock');
  const state = host.__zoPlayer || (host.__zoPlayer = {playing: false, raf: 0});
  state.meta = meta;
  scrub.max = String(meta.clock_end);
  const show = (clock, emit) => {
    applyClock(Plotly, gd, clock);
    for (const f of followers) applyClock(Plotly, f, clock);
    scrub.value = String(Math.floor(clock));
    label.textContent = fmtClock(meta, clock);
    if (emit && channel) window.dispatchEvent(new CustomEvent('zo-clock', {detail: {channel, clock}}));
  };
  const stop = () => {
    state.playing = false; cancelAnimationFrame(state.raf);
    play.textContent = '▶ Play'; host.setAttribute('data-playing', '0');
  };
  const start = () => {
    let clock = gd.__zoClock === undefined ? meta.clock_end : gd.__zoClock;
    if (clock >= meta.clock_end) clock = 0;  // at the end: play again from the start
    state.playing = true; play.textContent = '❚❚ Pause'; host.setAttribute('data-playing', '1');
    let last = performance.now(), shownAt = 0;
    const rate = meta.clock_end / (meta.seconds || 6);  // clock units per second at 1×
    const tick = (now) => {
      if (!state.playing) return;
      clock = Math.min(meta.clock_end, clock + rate * Number(speed.value) * (now - last) / 1000);
      last = now;
      if (now - shownAt > 40 || clock >= meta.clock_end) { show(clock, true); shownAt = now; }
      if (clock >= meta.clock_end) { stop(); return; }
      state.raf = requestAnimationFrame(tick);
    };
    state.raf = requestAnimationFrame(tick);
  };
  play.onclick = () => (state.playing ? stop() : start());
  scrub.oninput = () => { stop(); show(Number(scrub.value), true); };
  stop();
  show(gd.__zoClock === undefined ? meta.clock_end : Math.min(gd.__zoClock, meta.clock_end), true);
}

export default function (component) {
  const { data, parentElement, setTriggerValue } = component;
  if (data.preload) { loadPlotly(data.src).catch(() => {}); return undefined; }  // see preload()
  const fontPx = data.present ? data.font_px[1] : data.font_px[0];
  let row = parentElement.querySelector('div.zo-row');
  if (!row) {
    row = document.createElement('div');
    row.className = 'zo-row';
    row.style.cssText = 'display:flex;flex-wrap:wrap;gap:12px;width:100%;align-items:flex-start;';
    parentElement.appendChild(row);
  }
  let error = parentElement.querySelector('div.zo-chart-error');
  if (!error) {
    error = document.createElement('div');
    error.className = 'zo-chart-error';
    parentElement.appendChild(error);
  }
  const items = data.items;
  // One host (chart + its player bar) per figure, kept across reruns.
  const hosts = Array.from(row.children);
  while (hosts.length > items.length) { const h = hosts.pop(); if (window.Plotly) window.Plotly.purge(h.querySelector('.zo-chart')); h.remove(); }
  while (hosts.length < items.length) {
    const h = document.createElement('div');
    h.className = 'zo-host';
    const title = document.createElement('div');  // the chart's title, as page text above it
    title.className = 'zo-title';
    title.style.cssText = 'font-weight:600;margin:0 0 2px 4px;line-height:1.3;';
    h.appendChild(title);
    const gd = document.createElement('div');
    gd.className = 'zo-chart';
    gd.style.width = '100%';
    h.appendChild(gd);
    row.appendChild(h);
    hosts.push(h);
  }
  items.forEach((item, i) => {
    const basis = data.present ? Math.max(item.basis, data.present_basis) : item.basis;
    hosts[i].style.cssText = 'flex:1 1 ' + basis + 'px;min-width:min(100%,' + basis + 'px);max-width:100%;';
    const title = hosts[i].querySelector('.zo-title');
    title.textContent = item.title || '';
    title.style.display = item.title ? 'block' : 'none';
    title.style.fontSize = (fontPx + 2) + 'px';
  });
  const gds = hosts.map((h) => h.querySelector('.zo-chart'));
  const seq = (row.__zoSeq = (row.__zoSeq || 0) + 1);
  gds.forEach((gd) => gd.setAttribute('data-drawing', ''));  // until drawn (the browser test's clock reads it)
  row.setAttribute('data-present', data.present ? '1' : '0');
  gds[0].__zoClickable = !!data.clickable;
  gds[0].__zoTrigger = setTriggerValue;
  loadPlotly(data.src).then((Plotly) => {
    if (seq !== row.__zoSeq) return null;  // a newer figure arrived while plotly.js was loading
    const figs = items.map((item) => {
      const fig = JSON.parse(item.figure);
      fig.layout = fig.layout || {};
      fig.layout.template = pageTemplate(parentElement, fontPx);
      if (data.present) present(fig, fontPx);
      return fig;
    });
    gds.forEach((gd) => {
      if (!gd.__zoResize) {  // redraw at the new width when the column, the row or a tab changes size
        gd.__zoResize = new ResizeObserver(() => { if (gd._fullLayout) Plotly.Plots.resize(gd); });
        gd.__zoResize.observe(gd);
      }
    });
    return Promise.all(figs.map((fig, i) => Plotly.react(gds[i], {
      data: fig.data, layout: fig.layout, frames: fig.frames || [],
      config: Object.assign({responsive: true}, items[i].config)}))).then(() => {
      if (seq !== row.__zoSeq) return null;
      let player = null;
      const followers = [];
      figs.forEach((fig, i) => {
        const meta = fig.layout.meta || {};
        const gd = gds[i];
        const newRevision = gd.__zoRevision !== items[i].revision;
        gd.__zoRevision = items[i].revision;
        if (meta.zo_player || meta.zo_follow) {
          gd.__zoTracks = snapshot(gd, (meta.zo_player || meta.zo_follow).tracks);
          if (newRevision) gd.__zoClock = undefined;  // a new setting starts at its end
          gd.__zoChannel = meta.zo_channel || null;
        }
        if (meta.zo_player && !player) player = {gd, meta: meta.zo_player, host: hosts[i], channel: meta.zo_channel};
        else if (meta.zo_follow) followers.push(gd);
      });
      hosts.forEach((h) => {  // a host that no longer plays loses its bar
        if ((!player || h !== player.host) && h.querySelector('div.zo-player')) h.querySelector('div.zo-player').remove();
      });
      if (player) setupPlayer(Plotly, player.host, player.gd, player.meta, followers, player.channel);
      // Followers of a player in another component (the 3-D view follows the contour's clock).
      for (const gd of followers) {
        if (player) continue;
        if (!gd.__zoListener) {
          gd.__zoListener = (ev) => {
            if (ev.detail && ev.detail.channel === gd.__zoChannel && gd._fullLayout) applyClock(Plotly, gd, ev.detail.clock);
          };
          window.addEventListener('zo-clock', gd.__zoListener);
        }
        const last = window.__zoLastClock && window.__zoLastClock[gd.__zoChannel];
        if (last !== undefined) applyClock(Plotly, gd, last);
      }
      return true;
    });
  }).then((drawn) => {
    if (!drawn || seq !== row.__zoSeq) return;  // an older figure finished after a newer one arrived
    gds.forEach((gd, i) => { gd.setAttribute('data-revision', items[i].revision); gd.removeAttribute('data-drawing'); });
    error.textContent = '';
  }).catch((err) => {
    if (seq !== row.__zoSeq) return;
    gds.forEach((gd) => {
      if (window.Plotly && window.Plotly.purge) window.Plotly.purge(gd);  // the next figure starts afresh
      gd.removeAttribute('data-drawing');
    });
    error.textContent = 'The chart could not be drawn: ' + err.message;
  });
  if (!window.__zoClockMemory) {  // the last clock of every channel, for a follower drawn later (a tab shown)
    window.__zoClockMemory = true;
    window.__zoLastClock = {};
    window.addEventListener('zo-clock', (ev) => { window.__zoLastClock[ev.detail.channel] = ev.detail.clock; });
  }
  const gd = gds[0];
  if (!gd.__zoClickListener) {
    // A click anywhere in the plot area reports its data coordinates (not only clicks on points).
    // The end of a drag (panning) fires no click here: Plotly's drag handling keeps it (the browser
    // test checks that a drag leaves the start where it was).
    gd.__zoClickListener = true;
    gd.addEventListener('click', (ev) => {
      if (!gd.__zoClickable || !gd._fullLayout) return;
      const drag = gd.querySelector('.nsewdrag');
      if (!drag) return;
      const box = drag.getBoundingClientRect();
      const px = ev.clientX - box.left, py = ev.clientY - box.top;
      if (px < 0 || py < 0 || px > box.width || py > box.height) return;
      const full = gd._fullLayout;
      gd.__zoTrigger('click', {x: full.xaxis.p2l(px), y: full.yaxis.p2l(py)});
    });
  }
  // Called by Streamlit when the chart leaves the page (another page, the 3-D tab switched off).
  return () => {
    const host = gds.length ? gds[0].parentElement : null;  // the zo-host of the first chart
    if (host && host.__zoPlayer) { host.__zoPlayer.playing = false; cancelAnimationFrame(host.__zoPlayer.raf); }
    for (const g of gds) {
      if (g.__zoResize) g.__zoResize.disconnect();
      if (g.__zoListener) window.removeEventListener('zo-clock', g.__zoListener);
      if (window.Plotly && window.Plotly.purge) window.Plotly.purge(g);
    }
    window.__zoCleanups = (window.__zoCleanups || 0) + 1;  // read by the browser test
  };
}
"""

#: The component's registered name (the tests find the charts by it).
NAME = "adamezo_lab.plotly_chart"
_component = st.components.v2.component(NAME, js=_JS, isolate_styles=False)


def _plotly_src() -> str:
    """The URL of plotly.js on this server (registered as a static component path on each call: cheap,
    and it keeps working under a fresh runtime such as ``AppTest``)."""
    served = components_v1.declare_component("plotlyjs", path=str(PLOTLY_DIR))
    base = (st.get_option("server.baseUrlPath") or "").strip("/")
    return "/" + "/".join(p for p in (base, "component", served.name, PLOTLY_JS) if p)


def preload() -> None:
    """Start loading plotly.js (4.6 MB) in the browser now, from an empty, invisible instance of the
    component, so that a page which computes for seconds before its first chart has it parsed by then
    (the browser loads it on another core while the server computes)."""
    _component(key="zo-preload", data={"items": [], "preload": True, "src": _plotly_src()},
               on_click_change=lambda: None)


def presenting() -> bool:
    """Whether the page is in presentation mode (the sidebar's toggle, kept in the URL)."""
    return bool(st.session_state.get("present", False))


def plotly_charts(figures: Sequence[Any], *, key: str, configs: Sequence[Mapping[str, Any] | None] | None = None,
                  basis: Sequence[int] | None = None, clickable: bool = False,
                  titles: Sequence[str] | None = None) -> None:
    """Show ``figures`` (``go.Figure``s or plain figure dicts) side by side in one component that keeps its
    place across reruns: each at least ``basis[i]`` pixels wide (default 420), wrapping onto a new line
    when the page is narrower. With ``clickable``, a click in the first figure's plot area reruns the
    script with the clicked point ``{"x", "y"}`` (data coordinates) in ``st.session_state[key]["click"]``,
    readable from the top of that run (before any widget is drawn, so it can set widget values)."""
    show_items(chart_items(figures, configs, basis, titles), key=key, clickable=clickable)


def chart_items(figures: Sequence[Any], configs: Sequence[Mapping[str, Any] | None] | None = None,
                basis: Sequence[int] | None = None, titles: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """What :func:`plotly_charts` hands the browser for ``figures``: one item each, the figure as JSON
    (plain data, so that it can be stored: ``app.landing``)."""
    configs = list(configs or [None] * len(figures))
    basis = list(basis or [420] * len(figures))
    titles = list(titles or [""] * len(figures))
    items = []
    for fig, config, width, title in zip(figures, configs, basis, titles):
        fig_json = pio.to_json(fig, validate=False)
        items.append({"figure": fig_json, "config": dict(config or {"displaylogo": False}), "basis": int(width),
                      "revision": hashlib.sha256(fig_json.encode()).hexdigest()[:16], "title": str(title)})
    return items


def show_items(items: Sequence[Mapping[str, Any]], *, key: str, clickable: bool = False) -> None:
    """Draw :func:`chart_items`' items in one component under ``key``."""
    data = {"items": list(items), "clickable": clickable, "src": _plotly_src(), "present": presenting(),
            "font_px": list(FONT_PX), "present_basis": PRESENT_BASIS}
    _component(key=key, data=data, on_click_change=lambda: None)


def plotly_chart(figure: Any, *, key: str, config: Mapping[str, Any] | None = None,
                 clickable: bool = False, title: str = "") -> None:
    """One figure: :func:`plotly_charts` with a single item (full width)."""
    plotly_charts([figure], key=key, configs=[config], basis=[320], clickable=clickable, titles=[title])


def figures_of(component_data: Mapping[str, Any] | str) -> list[dict]:
    """The figures a chart component was given (for tests): its JSON ``data`` -> list of figure dicts."""
    data = json.loads(component_data) if isinstance(component_data, str) else component_data
    return [json.loads(item["figure"]) for item in data["items"]]
