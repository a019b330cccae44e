r"""User-provided text shown as text.

Streamlit renders the body of ``st.error``, ``st.warning``, ``st.caption`` and ``st.markdown`` as
Markdown (links, images, emphasis, LaTeX between dollar signs, ``:colour[...]`` and emoji shortcodes).
A value from a link or a file echoed into such a message could therefore show a clickable link or load
an external image in a teacher's browser. :func:`plain` backslash-escapes every ASCII punctuation
character (CommonMark lets any of them be escaped, and an escaped character is shown as itself) and
folds line breaks, so the message is shown exactly as written, on one line.

Escapes do not stop GitHub-flavoured autolinks: Streamlit's Markdown finds ``https://…``, ``www.…``
and ``name@host`` in the text *after* escapes are resolved (checked in Chromium: an escaped
``https\:\/\/evil.example`` still became a link). So :func:`plain` also puts an invisible WORD
JOINER (U+2060) inside each of those patterns (``https⁠://``, ``www⁠.``, ``name⁠@host``), which the
autolink rules no longer match; the text looks the same.
"""

from __future__ import annotations

import re

_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")
_ESCAPED = re.compile(r"\\([!-/:-@\[-`{-~])")
_AUTOLINK = re.compile(r"(?i)(https?|ftp|mailto|www)(?=[:.])|(?=@)")
WORD_JOINER = "\u2060"


def plain(text: object) -> str:
    """``text`` as Markdown that renders literally, on one line, with no autolink."""
    folded = " ".join(str(text).split())
    joined = _AUTOLINK.sub(lambda m: (m.group(1) or "") + WORD_JOINER, folded)
    return _PUNCTUATION.sub(r"\\\1", joined)


def unescape(markdown: str) -> str:
    """The text :func:`plain` made ``markdown`` from (for tests and logs)."""
    return _ESCAPED.sub(r"\1", markdown).replace(WORD_JOINER, "")
