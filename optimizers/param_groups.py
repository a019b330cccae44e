"""Param groups with and without weight decay, the Hugging Face convention.

    groups = weight_decay_groups(model.named_parameters(), weight_decay=0.01)
    opt = MeZO(groups, lr=1e-6)

Biases and layer-norm weights are not decayed: a parameter whose name contains ``"bias"``,
``"layer_norm"`` or ``"layernorm"`` (case-sensitive, as in the published MeZO and AdaMeZO code and
Hugging Face's trainer of that time) goes to a group with ``weight_decay = 0``; every other trainable
parameter to a group with ``weight_decay``. Parameters with ``requires_grad=False`` are left out (as
are duplicates: ``named_parameters`` lists a tied weight once).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

#: Substrings of a parameter's name that exempt it from weight decay.
NO_DECAY = ("bias", "layer_norm", "layernorm")


def weight_decay_groups(named_parameters: Iterable[tuple[str, torch.Tensor]], weight_decay: float,
                        no_decay: Iterable[str] = NO_DECAY) -> list[dict]:
    """Two param groups: ``{"params": decayed, "weight_decay": weight_decay}`` and ``{"params": others,
    "weight_decay": 0.0}`` (an empty group is left out). ``ValueError`` if ``weight_decay`` is not a
    number >= 0 or nothing is trainable."""
    if isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float)) or not weight_decay >= 0:
        raise ValueError(f"invalid weight_decay={weight_decay!r}; allowed: a number >= 0")
    no_decay = tuple(no_decay)
    decay, other = [], []
    for name, p in named_parameters:
        if not p.requires_grad:
            continue
        (other if any(word in name for word in no_decay) else decay).append(p)
    if not decay and not other:
        raise ValueError("no trainable parameters (requires_grad=True) to put in param groups")
    groups = [{"params": decay, "weight_decay": float(weight_decay)}, {"params": other, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]
