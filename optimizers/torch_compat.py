"""Every use of torch's private internals, in one place, behind a version guard.

The library uses three things torch does not document as public API:

- ``torch.optim.Optimizer.profile_hook_step``, the wrapper torch puts around every optimizer's ``step``
  (a profiler scope plus the step hooks), and the private state it reads (the global hook dicts,
  ``_optimizer_step_code``, whether the profiler is on). :func:`profile_hook_step` skips the profiler
  scope when nobody can see it (~45 µs a step on a 2-core CPU: a third of a MeZO step on a 2-D
  landscape, where the app takes thousands of steps per re-render; nothing next to a model's forward
  pass).
- Unwrapping torch's own wrapper from ``torch.optim.Adam.step`` (:func:`unhooked_step`): the library's
  Adam/AdamW run torch's update inside their own wrapped ``step``, and must not run the hooks twice.
- ``torch.optim.adam.adam``, torch's functional Adam (:data:`adam_functional`), which ZO-Adam and the
  float16/bfloat16 path of Adam/AdamW call with their own tensors.

The shortcut of :func:`profile_hook_step` is taken only on a torch version it was checked against
(:data:`CHECKED_TORCH`) and only while every private name it reads exists; otherwise torch's own
wrapper is used unchanged (the scope costs its ~45 µs again, nothing else changes). The tests in
``tests/optimizers/test_optimizers_battery.py`` (hooks, profiler scope, no double hooks) check all of it
on the installed torch.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from torch.optim import optimizer as _torch_optimizer
from torch.optim.adam import adam as adam_functional  # noqa: F401  (re-exported: the one import of it)

#: torch versions (major, minor) whose private optimizer internals the shortcut was checked against.
CHECKED_TORCH = ((2, 13),)


def _torch_version() -> tuple[int, int]:
    parts = torch.__version__.split("+")[0].split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return (0, 0)


def shortcut_available() -> bool:
    """Whether :func:`profile_hook_step` may skip torch's scope: a checked torch with the private names."""
    return (_torch_version() in CHECKED_TORCH
            and hasattr(torch._C, "_autograd") and hasattr(torch._C._autograd, "_profiler_enabled")
            and hasattr(_torch_optimizer, "_global_optimizer_pre_hooks")
            and hasattr(_torch_optimizer, "_global_optimizer_post_hooks")
            and hasattr(torch.optim.Optimizer, "_optimizer_step_code"))


def profile_hook_step(func: Callable) -> Callable:
    """``torch.optim.Optimizer.profile_hook_step`` that enters its profiler scope only when it is seen.

    Calls torch's own wrapper, unchanged, whenever a profiler is running or any step hook (per
    optimizer or global) is registered, and otherwise calls ``step`` directly, so profiles and hooks see
    exactly what torch gives them. On a torch version not in :data:`CHECKED_TORCH` it is torch's wrapper.
    """
    hooked = torch.optim.Optimizer.profile_hook_step(func)
    if not shortcut_available():
        return hooked

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        self = args[0]
        if (torch._C._autograd._profiler_enabled() or self._optimizer_step_pre_hooks
                or self._optimizer_step_post_hooks or _torch_optimizer._global_optimizer_pre_hooks
                or _torch_optimizer._global_optimizer_post_hooks):
            return hooked(*args, **kwargs)
        out = func(*args, **kwargs)
        self._optimizer_step_code()
        return out

    return wrapper


def unhooked_step(step: Callable) -> Callable:
    """torch's update function under ``step`` (a ``torch.optim`` class's ``step``), without the wrapper
    torch adds once any instance of that class exists (its hooks would otherwise run twice)."""
    func = getattr(step, "__func__", step)
    if getattr(func, "hooked", False) and hasattr(func, "__wrapped__"):
        return func.__wrapped__
    return func
