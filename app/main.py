"""Entry point: ``streamlit run app/main.py``. One file per page under ``app/app_pages/``.

(Not ``app/pages/``: Streamlit would also treat that folder as legacy pages and run a page without this
entry point when a shared link opens it directly.)
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # so that ``import app.figures`` works however the app is started
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from app import chart  # noqa: E402  (plotly and streamlit only: torch is imported by the pages, after their title)

# Presentation mode (for a projector): from the link on arrival, then the sidebar's toggle; kept in the URL.
if "present" not in st.session_state:
    st.session_state["present"] = st.query_params.get("present", "0").strip().lower() in ("1", "true", "on", "yes")
st.set_page_config(page_title="AdaMeZO lab", page_icon="🧭", layout="wide",
                   initial_sidebar_state="collapsed" if st.session_state["present"] else "auto")

PAGES = [
    st.Page("app_pages/playground.py", title="Playground", icon="🎯", url_path="playground", default=True),
    st.Page("app_pages/compare.py", title="Compare", icon="📊", url_path="compare"),
    st.Page("app_pages/lessons.py", title="Lessons", icon="🎓", url_path="lessons"),
    st.Page("app_pages/llm.py", title="LLM fine-tune", icon="🤖", url_path="llm"),
]

page = st.navigation(PAGES)
with st.sidebar:
    st.toggle("Presentation mode", key="present",
              help="For a projector: the sidebar folds away, chart text is larger, lines thicker, charts "
                   "stack below each other unless the screen is wide, and tables keep the columns that "
                   "matter. Kept in the link.")
    chart.preload()  # plotly.js loads in the browser while the page computes its first picture
page.run()
# After the page, so that starting them (seconds of CPU each) does not slow the first page down.
from app import compute  # noqa: E402

try:
    compute.start_workers()  # in the background; a no-op once they run
except ValueError as exc:
    from app.text import plain

    st.warning(plain(f"{exc}. New trajectories are computed in the server process, one after another."))
