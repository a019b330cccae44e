"""Which model and task paths the app may read (the command line reads any path it is given).

The app's LLM page takes its model and task from a link, so a link must not make the server read
``/etc/passwd`` or tell whether a file exists. The page reads only the bundled assets and what lies
under the folders the server's operator lists in ``$ADAMEZO_MODEL_ROOTS`` and ``$ADAMEZO_DATA_ROOTS``
(``os.pathsep``-separated). Paths are resolved (symbolic links and ``..``) before the check, and a
refused path gets the same message whether it exists or not.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from .tasks import BUNDLED_MODEL, BUNDLED_TASK, BUNDLED_TASKS

ROOTS_ENV = {"model": "ADAMEZO_MODEL_ROOTS", "data": "ADAMEZO_DATA_ROOTS"}
BUNDLED = {"model": BUNDLED_MODEL, "data": BUNDLED_TASK}
BUNDLED_ALL = {"model": [BUNDLED_MODEL], "data": list(BUNDLED_TASKS.values())}
WHAT = {"model": "model folder", "data": "task file or folder"}


def _resolve(path: str | Path) -> Path | None:
    """The absolute path with every symbolic link and ``..`` resolved, or None if it cannot be."""
    try:
        return Path(os.path.realpath(os.fspath(path)))
    except (OSError, ValueError, TypeError):  # an embedded NUL byte, a loop, ...
        return None


def app_roots(kind: str, environ: Mapping[str, str] | None = None) -> list[Path]:
    """The folders the app may read a ``kind`` ("model" or "data") from: the bundled ones, then the operator's."""
    if kind not in ROOTS_ENV:
        raise ValueError(f"unknown path kind {kind!r}; allowed: 'model', 'data'")
    environ = os.environ if environ is None else environ
    listed = BUNDLED_ALL[kind] + [p for p in environ.get(ROOTS_ENV[kind], "").split(os.pathsep) if p.strip()]
    roots = []
    for p in listed:
        resolved = _resolve(p)
        if resolved is not None and resolved not in roots:
            roots.append(resolved)
    return roots


def check_app_path(text: str, kind: str, roots: Sequence[Path]) -> Path | None:
    """The resolved path the app may read for ``text``, or None for an empty text (the bundled asset).

    A pure function of its arguments and the file system's links: ``ValueError`` unless the resolved
    path is one of ``roots`` or lies under one. The message is the same whether the path exists or not,
    and does not repeat the path.
    """
    if kind not in ROOTS_ENV:
        raise ValueError(f"unknown path kind {kind!r}; allowed: 'model', 'data'")
    if not text or not text.strip():
        return None
    resolved = _resolve(text.strip())
    if resolved is not None and any(resolved == r or resolved.is_relative_to(r) for r in roots):
        return resolved
    bundled = [_resolve(p) for p in BUNDLED_ALL[kind]]
    extra = [str(r) for r in roots if r not in bundled]
    where = (f"the folders in the server's {ROOTS_ENV[kind]} setting ({', '.join(extra)})" if extra else
             f"the folders the server's operator lists in the {ROOTS_ENV[kind]} setting (none are listed)")
    raise ValueError(f"this {WHAT[kind]} is not one the app may read; allowed: empty for the bundled one, "
                     f"or a path under {where}")
