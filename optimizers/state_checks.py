"""Checks for ``load_state_dict``: every value of a state dict is validated before anything is assigned.

Each helper returns the value converted (an ``int``, a tensor in the dtype and device the optimizer
keeps) or raises ``ValueError`` naming where the value sits in the state dict, the value and what is
allowed. Values are shown shortened, so a hostile state dict cannot flood an error message.
"""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import torch

from .specs import HyperSpec, validate_betas

MAX_SEED = 2**63 - 1


def short(value: Any, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters (tensors by shape and dtype only)."""
    if isinstance(value, torch.Tensor):
        return f"tensor of shape {tuple(value.shape)} and dtype {str(value.dtype).removeprefix('torch.')}"
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def keys(value: Any, where: str, what: str, required: Sequence[str], optional: Sequence[str] = ()) -> Mapping:
    """``value`` as a mapping with all ``required`` keys and no key outside ``required + optional``."""
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}: {what} must be a dict, got {short(value)}")
    missing = [k for k in required if k not in value]
    if missing:
        raise ValueError(f"{where}: {what} lacks {', '.join(map(repr, missing))}; "
                         f"it must have {', '.join(map(repr, required))}")
    unknown = [k for k in value if k not in required and k not in optional]
    if unknown:
        raise ValueError(f"{where}: {what} has unknown key(s) {', '.join(short(k) for k in unknown)}; "
                         f"allowed: {', '.join(map(repr, (*required, *optional)))}")
    return value


def count(value: Any, where: str, what: str) -> int:
    """A non-negative integer (a step or pass counter)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{where}: invalid {what}={short(value)}; allowed: an integer >= 0")
    return int(value)


def hyper(key: str, value: Any, specs: Mapping[str, HyperSpec], where: str) -> Any:
    """One hyperparameter of a saved configuration, checked against its spec. A saved ``lr`` may be 0 (a
    learning-rate schedule may have brought it there); ``initial_lr`` (what a torch scheduler keeps) is
    an lr."""
    if key == "betas":
        return validate_betas(value, dict(specs), where)
    if key in ("lr", "initial_lr"):
        return replace(specs["lr"], name=key, low_open=False).validate(value, where)
    return specs[key].validate(value, where)


def history_pair(pair: Any, where: str) -> tuple[int, float]:
    """One (seed, c) pair: an integer seed in [0, 2**63) and a finite c."""
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        raise ValueError(f"{where}: invalid pair {short(pair)}; allowed: a (seed, c) pair")
    seed, c = pair
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed <= MAX_SEED:
        raise ValueError(f"{where}: invalid seed={short(seed)}; allowed: an integer >= 0 and <= {MAX_SEED}")
    if isinstance(c, bool) or not isinstance(c, numbers.Real) or not math.isfinite(c):
        raise ValueError(f"{where}: invalid c={short(c)}; allowed: any finite number")
    return int(seed), float(c)


def tensor(value: Any, where: str, like: torch.Tensor | None, dtype: torch.dtype, device: torch.device,
           low: float | None = None, low_open: bool = False) -> torch.Tensor:
    """A finite floating-point tensor shaped like ``like`` (a scalar if ``like`` is None) whose elements
    are >= ``low`` (> if ``low_open``), returned in ``dtype`` on ``device`` (not copied if it already is)."""
    if not isinstance(value, torch.Tensor) or not value.is_floating_point():
        raise ValueError(f"{where}: expected a floating-point tensor, got {short(value)}")
    shape = () if like is None else tuple(like.shape)
    if tuple(value.shape) != shape and not (like is None and value.numel() == 1):
        raise ValueError(f"{where}: the tensor has shape {tuple(value.shape)}; allowed: {shape}, the parameter's shape")
    checked = value.detach()
    if not bool(torch.isfinite(checked).all()):
        raise ValueError(f"{where}: the tensor has non-finite elements; allowed: finite values only")
    if low is not None and value.numel():
        smallest = float(checked.min())
        if smallest < low or (low_open and smallest == low):
            raise ValueError(f"{where}: the tensor has an element {smallest:g}; allowed: "
                             f"{'>' if low_open else '>='} {low:g}")
    return checked.reshape(shape).to(dtype=dtype, device=device)


def groups(saved: Any, current: list[dict], specs: Mapping[str, HyperSpec], checked_keys: Sequence[str],
           where: str) -> tuple[list[dict], list[Any]]:
    """The saved param groups, checked against this optimizer's groups (same count, same sizes) and
    their ``checked_keys`` against ``specs``. Returns the new groups (holding the current parameters,
    as torch's loader does) and the saved parameter ids in order."""
    if not isinstance(saved, (list, tuple)):
        raise ValueError(f"{where}: 'param_groups' must be a list, got {short(saved)}")
    if len(saved) != len(current):
        raise ValueError(f"{where}: the state has {len(saved)} param group(s), this optimizer has {len(current)}; "
                         "allowed: the state of an optimizer over the same parameters")
    new_groups, ids = [], []
    for i, (group, saved_group) in enumerate(zip(current, saved)):
        here = f"{where}: param group {i}"
        if not isinstance(saved_group, Mapping):
            raise ValueError(f"{here} must be a dict, got {short(saved_group)}")
        missing = [k for k in ("params", *checked_keys) if k not in saved_group]
        if missing:
            raise ValueError(f"{here} lacks {', '.join(map(repr, missing))}")
        params = saved_group["params"]
        if not isinstance(params, (list, tuple)) or len(params) != len(group["params"]):
            size = len(params) if isinstance(params, (list, tuple)) else short(params)
            raise ValueError(f"{here} lists {size} parameter(s) in the state and {len(group['params'])} here; "
                             "allowed: the state of an optimizer over the same parameters")
        new = {k: copy.deepcopy(v) for k, v in saved_group.items() if k != "params"}
        for key in (*checked_keys, *(["initial_lr"] if "initial_lr" in saved_group else [])):
            new[key] = hyper(key, saved_group[key], specs, here)
        new["params"] = group["params"]
        if "param_names" in group and "param_names" not in new:
            new["param_names"] = group["param_names"]
        new_groups.append(new)
        ids.extend(params)
    for pid in ids:
        if isinstance(pid, bool) or not isinstance(pid, numbers.Integral):
            raise ValueError(f"{where}: invalid parameter id {short(pid)} in 'param_groups'; allowed: integers")
    if len(set(ids)) != len(ids):
        raise ValueError(f"{where}: 'param_groups' lists a parameter id twice; allowed: distinct ids")
    return new_groups, ids


def state_entries(saved: Any, ids: list[Any], where: str) -> dict[Any, Mapping]:
    """The saved per-parameter state: a dict from the ids that the groups list to dicts."""
    if not isinstance(saved, Mapping):
        raise ValueError(f"{where}: 'state' must be a dict, got {short(saved)}")
    known = set(ids)
    for pid, entry in saved.items():
        if pid not in known:
            raise ValueError(f"{where}: 'state' has an entry for parameter id {short(pid)}, which no param group "
                             "lists; allowed: the ids in 'param_groups'")
        if not isinstance(entry, Mapping):
            raise ValueError(f"{where}: the state of parameter {pid} must be a dict, got {short(entry)}")
    return dict(saved)
