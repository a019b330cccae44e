"""Rebuild a landscape from its ``recipe`` (a small JSON-able dict): for links and run records."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .catalogue import get
from .formula import custom
from .landscape import Landscape


def from_recipe(recipe: Mapping[str, Any]) -> Landscape:
    """The landscape a ``Landscape.recipe`` (or ``to_dict()["recipe"]``) describes.

    ``{"kind": "catalogue", "name": ..., "params": {...}, "start": [x, y]?}`` or
    ``{"kind": "custom", "expr": ..., "domain": [[x0, x1], [y0, y1]], "start": [x, y]}``.
    """
    if not isinstance(recipe, Mapping):
        raise ValueError(f"a landscape recipe must be a mapping, got {type(recipe).__name__}")
    kind = recipe.get("kind")
    start = recipe.get("start")
    if kind == "catalogue":
        params = recipe.get("params") or {}
        if not isinstance(params, Mapping):
            raise ValueError("a landscape recipe's params must be a mapping")
        return get(recipe.get("name"), start=start, **params)
    if kind == "custom":
        return custom(recipe.get("expr"), recipe.get("domain"), start)
    raise ValueError(f"unknown landscape recipe kind {kind!r}; allowed: 'catalogue', 'custom'")
