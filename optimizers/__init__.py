"""Zeroth-order and first-order optimizers behind one ``torch.optim`` API.

    from optimizers import MeZO, AdaMeZO, ZOAdam, HiZOO, HELENE, ZOAdaMU, make_optimizer, OPTIMIZERS

Every optimizer takes ``step(closure)`` where ``closure()`` only computes the loss. The zeroth-order
ones (MeZO, AdaMeZO, ZO-Adam, HiZOO, HELENE, ZO-AdaMU) call it under ``torch.no_grad()`` and never call
backward; first-order Adam/AdamW do zero_grad and backward themselves. ``docs/optimizers.md`` has the
math. Adding an optimizer: its module here, one entry in ``registry.py``, and its tests.
"""

from .adamezo import AdaMeZO, ema_weights, reference_code_equivalent
from .base import NonFiniteLossError, ZerothOrderOptimizer
from .directions import DirectionSampler, make_blocks, mix_key
from .first_order import Adam, AdamW
from .hizoo import HiZOO
from .mezo import MeZO
from .param_groups import NO_DECAY, weight_decay_groups
from .registry import OPTIMIZERS, OptimizerEntry, get_entry, make_optimizer, state_bytes
from .specs import HyperSpec
from .zo_adam import ZOAdam

# Every registered class is importable by its class name (``from optimizers import HELENE``): a new
# optimizer needs no line here.
for _entry in OPTIMIZERS.values():
    globals().setdefault(_entry.cls.__name__, _entry.cls)

__all__ = [
    "OPTIMIZERS", "Adam", "AdamW", "AdaMeZO", "DirectionSampler", "HiZOO", "HyperSpec", "MeZO",
    "NonFiniteLossError", "OptimizerEntry", "ZOAdam", "ZerothOrderOptimizer", "ema_weights",
    "get_entry", "make_blocks", "make_optimizer", "mix_key", "reference_code_equivalent", "state_bytes",
    "NO_DECAY", "weight_decay_groups",
]
__all__ += [e.cls.__name__ for e in OPTIMIZERS.values() if e.cls.__name__ not in __all__]
