"""A Plotly chart that stays mounted across reruns and is updated in place with ``Plotly.react``.

Why not ``st.plotly_chart``: Streamlit (1.67) derives a chart's element id from the whole figure JSON,
even when a ``key`` is given, so any new figure is a new element and the browser unmounts the chart
and draws it from scratch (~0.4 s a rerun on the Playground, measured). This component keeps its
``<div>`` under a fixed key and hands each new figure to ``Plotly.react``, which updates what changed.

plotly.js itself is the copy that the installed ``plotly`` package ships (``plotly/package_data``);
Streamlit serves that folder as a static component path, and the page loads it once.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import plotly
import plotly.io as pio
import streamlit as st
import streamlit.components.v1 as components_v1

PLOTLY_DIR = Path(plotly.__file__).parent / "package_data"
PLOTLY_JS = "plotly.min.js"

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
function pageTemplate(el) {
  const cs = getComputedStyle(el);
  const rgb = (cs.color.match(/[\d.]+/g) || ['49', '51', '63']).slice(0, 3).join(',');
  const faint = 'rgba(' + rgb + ',0.15)';
  const axis = {gridcolor: faint, zerolinecolor: faint, linecolor: faint, automargin: true};
  const scene = {gridcolor: faint, zerolinecolor: faint, backgroundcolor: 'rgba(0,0,0,0)', showbackground: false};
  return {layout: {font: {family: cs.fontFamily, color: cs.color}, paper_bgcolor: 'rgba(0,0,0,0)',
                   plot_bgcolor: 'rgba(0,0,0,0)', xaxis: axis, yaxis: axis, hovermode: 'closest',
                   scene: {xaxis: scene, yaxis: scene, zaxis: scene}}};
}

export default function (component) {
  const { data, parentElement, setTriggerValue } = component;
  let gd = parentElement.querySelector('div.zo-chart');
  if (!gd) {
    gd = document.createElement('div');
    gd.className = 'zo-chart';
    gd.style.width = '100%';
    parentElement.appendChild(gd);
  }
  let error = parentElement.querySelector('div.zo-chart-error');
  if (!error) {
    error = document.createElement('div');
    error.className = 'zo-chart-error';
    parentElement.appendChild(error);
  }
  const seq = (gd.__zoSeq = (gd.__zoSeq || 0) + 1);
  gd.setAttribute('data-drawing', '');  // until this figure is drawn (the browser test's clock reads it)
  gd.__zoClickable = !!data.clickable;
  gd.__zoTrigger = setTriggerValue;
  loadPlotly(data.src).then((Plotly) => {
    if (seq !== gd.__zoSeq) return null;  // a newer figure arrived while plotly.js was loading
    const fig = JSON.parse(data.figure);
    fig.layout = fig.layout || {};
    fig.layout.template = pageTemplate(parentElement);
    if (!gd.__zoResize) {  // redraw at the new width when the column or a tab changes size
      gd.__zoResize = new ResizeObserver(() => { if (gd._fullLayout) Plotly.Plots.resize(gd); });
      gd.__zoResize.observe(gd);
    }
    return Plotly.react(gd, {data: fig.data, layout: fig.layout, frames: fig.frames || [],
                             config: Object.assign({responsive: true}, data.config)});
  }).then((drawn) => {
    if (!drawn || seq !== gd.__zoSeq) return;  // an older figure finished after a newer one arrived
    gd.setAttribute('data-revision', data.revision);
    gd.removeAttribute('data-drawing');
    error.textContent = '';
  }).catch((err) => {
    if (seq !== gd.__zoSeq) return;
    if (window.Plotly && window.Plotly.purge) window.Plotly.purge(gd);  // the next figure starts afresh
    error.textContent = 'The chart could not be drawn: ' + err.message;
    gd.removeAttribute('data-drawing');
  });
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
    if (gd.__zoResize) gd.__zoResize.disconnect();
    if (window.Plotly && window.Plotly.purge) window.Plotly.purge(gd);
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


def plotly_chart(figure: Any, *, key: str, config: Mapping[str, Any] | None = None,
                 clickable: bool = False) -> None:
    """Show ``figure`` (a ``go.Figure`` or a plain figure dict) in a chart that keeps its place across
    reruns. With ``clickable``, a click in the plot area reruns the script with the clicked point
    ``{"x", "y"}`` (data coordinates) in ``st.session_state[key]["click"]``, readable from the top of
    that run (before any widget is drawn, so it can set widget values)."""
    fig_json = pio.to_json(figure, validate=False)
    data = {"figure": fig_json, "config": dict(config or {}), "clickable": clickable, "src": _plotly_src(),
            "revision": str(hash(fig_json))}
    _component(key=key, data=data, on_click_change=lambda: None)
