"""The zeroth-order optimizer base class: two-point SPSA, seeds, blocks, counting and state.

Two-point SPSA (shared by every ZO method here)::

    c_t = [L(θ_t + ε z_t; B_t) − L(θ_t − ε z_t; B_t)] / (2ε)        2 forward passes

θ is perturbed in place (+ε z, then −2ε z); subclasses restore it (+ε z) fused with their update,
which saves one regeneration of z. Subclasses implement :meth:`_apply` (the update of a step from its
log entry).

Several directions per step (``num_directions=q``, the averaged q-SPSA estimate): directions
z_1 … z_q, each with its own two forward passes (2q in all), and the estimate
ĝ = (1/q) Σ_j c_j z_j. Every direction but the last is restored at once; the last one is restored fused
with the update, as for q = 1 (which is exactly the two-point step above, bit for bit).

Hooks for methods that estimate something else (one ``step`` for all of them):
:meth:`_base_loss` (extra forward passes before the directions: HiZOO's L(θ)),
:meth:`_direction_extras` (what a direction's losses give besides c: HiZOO's curvature, in the log
entry), :meth:`_perturbation` (the perturbation block along a direction: HiZOO's Σ^{-1/2} z,
ZO-AdaMU's momentum-centred draw) and :meth:`_apply`.

Low precision: float16 and bfloat16 parameters are perturbed in their own dtype (the model runs in it),
but every update is computed per block in float32 (z, and m/v where the method has them, upcast into
float32 buffers) and written back to the parameter with one rounding. Methods that keep moments or a
curvature estimate keep them in float32 for such parameters.

After an error in a step (the closure raises, returns a non-finite loss, or a perturbation fails half
way) the parameters are put back block by block: every block that was moved is moved back by the
same perturbation. Floating-point addition loses information (fl(θ + εz) is the same float for many θ),
so without a copy of the parameters the result is their old values to within round-off, not bit for
bit: ``|Δθ| ≤ 2·eps·(|θ| + |δθ|) + 2·tiny`` per element (see :data:`RESTORED`).
"""

from __future__ import annotations

import math
import numbers
import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any, ClassVar

import torch

from . import state_checks as checks
from .directions import Block, DirectionSampler, make_blocks, mix_key
from .specs import EPS, LR, WEIGHT_DECAY, ZO_COMMON, HyperSpec
from .torch_compat import profile_hook_step

Closure = Callable[[], Any]

_POOL_SALT = 0x5EED_B0D6E7
_DRAW_SALT = 0xD1CE
_DIRECTION_SALT = 0xD15EC7


#: Temporary buffers (see ``_buffer``) that hold draws in the parameter's dtype; the others hold float32
#: for float16/bfloat16 parameters.
PARAMETER_DTYPE_SLOTS = (0, 8)

#: Parameter dtypes the optimizers train. float16/bfloat16 updates are computed in float32.
SUPPORTED_DTYPES = (torch.float64, torch.float32, torch.float16, torch.bfloat16)
LOW_PRECISION = (torch.float16, torch.bfloat16)

#: What a zeroth-order step guarantees about the parameters after an error (message and README).
RESTORED = ("The parameters were put back to their values before this step to within round-off, not bit "
            "for bit: every element within 2·eps·(|θ| + |δθ|) + 2·tiny of its old value θ (δθ: its "
            "perturbation; eps, tiny: the machine epsilon and the smallest subnormal of its dtype). An exact "
            "copy is not kept: it would double the memory.")


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype updates are computed in: float32 for float16/bfloat16 parameters, else their own."""
    return torch.float32 if dtype in LOW_PRECISION else dtype


def check_dtype(p: torch.Tensor, owner: str) -> None:
    """``ValueError`` unless ``p`` has a dtype the optimizers train."""
    if p.dtype not in SUPPORTED_DTYPES:
        raise ValueError(f"{owner}: parameters of dtype {str(p.dtype).removeprefix('torch.')} are not supported; "
                         "allowed: float64, float32, float16, bfloat16")


def check_process_group(group: Any, owner: str) -> Any:
    """``group`` if it is ``None`` or a process group of an initialized ``torch.distributed``;
    ``ValueError`` otherwise."""
    if group is None:
        return None
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_initialized():
        raise ValueError(f"{owner}: process_group was given, but torch.distributed is not initialized; call "
                         "torch.distributed.init_process_group first (or give process_group=None for one process)")
    if not isinstance(group, dist.ProcessGroup):
        raise ValueError(f"{owner}: invalid process_group={checks.short(group)}; allowed: None or a "
                         "torch.distributed process group (e.g. torch.distributed.group.WORLD)")
    return group


class NonFiniteLossError(ValueError):
    """The closure returned NaN or ±inf. The message says what became of the parameters."""


def check_loss(loss: Any, where: str, after: str = "", finite: bool = True) -> torch.Tensor:
    """Return ``loss`` as a detached 0-dim tensor, or raise ``ValueError`` saying what is wrong.

    ``after`` ends the message of a non-finite loss: what the caller guarantees about the parameters.
    ``finite=False`` skips the finiteness check (data parallel: it is made on the averaged loss, so that
    every rank fails the step alike).
    """
    if isinstance(loss, (int, float)) and not isinstance(loss, bool):
        loss = torch.tensor(float(loss), dtype=torch.float64)
    if not isinstance(loss, torch.Tensor):
        raise ValueError(f"{where}: the closure must return a scalar loss tensor, got {type(loss).__name__}")
    if loss.numel() != 1:
        raise ValueError(
            f"{where}: the closure must return a scalar loss, got a tensor of shape {tuple(loss.shape)}"
        )
    loss = loss.detach().reshape(())
    if not finite:
        return loss
    value = float(loss)
    if not math.isfinite(value):
        raise NonFiniteLossError(
            f"{where}: the closure returned a non-finite loss ({value}); the loss must be finite."
            + (f" {after}" if after else "")
        )
    return loss


def group_hyper(group: dict, specs: dict[str, HyperSpec], owner: str, keys: Iterable[str] = ("lr", "weight_decay")
                ) -> None:
    """Validate the per-group hyperparameters (lr, weight_decay, ...) of one param group in place."""
    for key in keys:
        group[key] = specs[key].validate(group[key], owner)


def seed_for_step(seed: int, seed_budget: int | None, step: int, direction: int = 0) -> int:
    """The seed of direction ``direction`` (0-based; q-SPSA draws several) of step ``step`` of an optimizer
    with this ``seed`` and ``seed_budget``. Direction 0 is the one a single-direction step draws."""
    if direction == 0:
        if seed_budget is None:
            return mix_key(seed, step)
        index = mix_key(seed, _DRAW_SALT, step) % seed_budget
    else:
        if seed_budget is None:
            return mix_key(seed, _DIRECTION_SALT, step, direction)
        index = mix_key(seed, _DRAW_SALT, step, direction) % seed_budget
    return mix_key(seed, _POOL_SALT, index)


def state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Exact bytes of an optimizer's state: the tensors in ``optimizer.state`` plus 16 bytes per (seed, c)
    pair it keeps (``optimizer.history``; none for first-order methods)."""
    tensors = sum(t.numel() * t.element_size() for s in optimizer.state.values()
                  for t in s.values() if isinstance(t, torch.Tensor))
    return tensors + 16 * len(getattr(optimizer, "history", ()))


class ZerothOrderOptimizer(torch.optim.Optimizer):
    """Base class of the forward-only optimizers: SPSA, seed schedule, blocks and state.

    Param groups carry ``lr`` and ``weight_decay``; everything else (ε, seed, seed budget, chunk
    size, distribution and the method's own hyperparameters) is optimizer-wide, because one
    perturbation touches all groups at once.
    """

    zeroth_order: ClassVar[bool] = True
    #: Forward passes a step takes before its directions (HiZOO: 1, for L(θ)).
    extra_forward_passes: ClassVar[int] = 0
    #: Forward passes per step with one direction (an instance with q directions has 2q + extra).
    forward_passes_per_step: ClassVar[int] = 2
    #: Per-group hyperparameters (validated at construction and in a loaded state).
    group_keys: ClassVar[tuple[str, ...]] = ("lr", "weight_decay")
    _log_length: ClassVar[int] = 2  # a direction's part of a log entry: (seed, c); HiZOO adds the curvature
    profile_hook_step = staticmethod(profile_hook_step)
    hyperparameters: ClassVar[dict[str, HyperSpec]] = {
        s.name: s for s in (LR, EPS, WEIGHT_DECAY)
    } | ZO_COMMON

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict],
        lr: float,
        eps: float,
        weight_decay: float,
        seed: int,
        seed_budget: int | None,
        chunk_size: int,
        distribution: str,
        workers: int | None = None,
        num_directions: int = 1,
        group_defaults: Mapping[str, Any] | None = None,
        process_group: Any = None,
    ) -> None:
        name = type(self).__name__
        self.process_group = check_process_group(process_group, name)
        specs = self.hyperparameters
        defaults = {"lr": specs["lr"].validate(lr, name),
                    "weight_decay": specs["weight_decay"].validate(weight_decay, name), **(group_defaults or {})}
        self.eps = specs["eps"].validate(eps, name)
        self.seed = specs["seed"].validate(seed, name)
        self.seed_budget = specs["seed_budget"].validate(seed_budget, name)
        self.chunk_size = specs["chunk_size"].validate(chunk_size, name)
        self.distribution = specs["distribution"].validate(distribution, name)
        self.num_directions = specs["num_directions"].validate(num_directions, name)
        self._frozen = False
        super().__init__(params, defaults)
        for group in self.param_groups:
            group_hyper(group, specs, name, self.group_keys)
        self._frozen = True
        self.forward_passes_per_step = self.passes_per_step(self.num_directions)
        self.forward_passes = 0
        self.steps = 0
        self.last_log_entry: tuple | None = None  # what replay() needs to redo the last step
        self._history: list[tuple[int, float]] = []
        self.workers = specs["workers"].validate(workers, name)
        self._samplers: list[DirectionSampler] = []
        self._pool: ThreadPoolExecutor | None = None
        self._layout()
        self._group_checked = False
        if self.process_group is not None:
            self._check_group()

    # ----------------------------------------------------------------------------- layout
    def add_param_group(self, param_group: dict) -> None:
        if getattr(self, "_frozen", False):
            raise ValueError(
                f"{type(self).__name__}: param groups are fixed at construction (the block layout of "
                "the random directions must not change); build a new optimizer instead"
            )
        super().add_param_group(param_group)

    def _layout(self) -> None:
        owner = type(self).__name__
        self._params: list[torch.Tensor] = []
        self._group_of: list[dict] = []
        for group in self.param_groups:
            for p in group["params"]:
                if not p.requires_grad:
                    continue
                if not p.is_contiguous():
                    raise ValueError(f"{owner}: parameters must be contiguous tensors")
                check_dtype(p, owner)
                self._params.append(p)
                self._group_of.append(group)
        self._blocks: list[Block] = make_blocks(self._params, self.chunk_size)
        # Per block: is its parameter float16/bfloat16 (update computed in float32)?
        self._low = [self._params[bl.param].dtype in LOW_PRECISION for bl in self._blocks]
        self._buffers: dict[tuple, torch.Tensor] = {}
        self._views: dict[Block, tuple[int, torch.Tensor]] = {}  # see _view
        generated = self.generated_elements if self._samplers else 0
        workers = self._worker_count()
        # Blocks are independent (keyed generation), so workers take contiguous runs of blocks of
        # about equal size; results do not depend on the number of workers.
        total, parts, acc = sum(bl.numel for bl in self._blocks), [[] for _ in range(workers)], 0
        for b, bl in enumerate(self._blocks):
            parts[min(workers - 1, acc * workers // max(total, 1))].append(b)
            acc += bl.numel
        self._parts = [part for part in parts if part] or [[]]
        self._samplers = [DirectionSampler(self.distribution) for _ in self._parts]
        self._samplers[0].generated_elements = generated
        if self._pool is not None:
            self._pool.shutdown()
        self._pool = ThreadPoolExecutor(len(self._parts)) if len(self._parts) > 1 else None

    def _worker_count(self) -> int:
        """Worker threads actually used: ``workers`` (or the automatic choice), at most one per block
        and one per CPU core. Any ``workers`` is accepted; what is allocated (a sampler, a thread and
        three block buffers per worker) is bounded by the blocks and the cores, and results never
        depend on it."""
        wanted = self.workers or self._auto_workers()
        return max(1, min(wanted, len(self._blocks), os.cpu_count() or 1))

    def _auto_workers(self) -> int:
        """One worker per torch CPU thread for large CPU models; one on CUDA or for small problems."""
        if any(p.device.type != "cpu" for p in self._params):
            return 1
        if sum(p.numel() for p in self._params) < 4 * 2**20:
            return 1
        return max(1, min(torch.get_num_threads(), len(self._blocks)))

    def _for_blocks(self, fn: Callable[[int, int], None], only: set[int] | None = None) -> None:
        """Call ``fn(block, worker)`` for every block (or the blocks in ``only``), on the worker threads
        when there are several. If a call raises, every worker is waited for before it re-raises, so
        nothing keeps changing the parameters behind the caller's back."""
        if self._pool is None:
            for b in (range(len(self._blocks)) if only is None else sorted(only)):
                fn(b, 0)
            return
        parts = self._parts if only is None else [[b for b in part if b in only] for part in self._parts]
        futures = [self._pool.submit(lambda part=part, w=w: [fn(b, w) for b in part])
                   for w, part in enumerate(parts) if part]
        try:
            for future in futures:
                future.result()
        except BaseException:
            wait(futures)
            raise

    def _view(self, block: Block) -> torch.Tensor:
        """The parameter elements of ``block``, as a writable 1-D view.

        Views are kept per block (three torch calls saved per use: small problems take thousands of
        steps a second) and made again if the parameter's storage was replaced (``p.data = ...``).
        """
        p = self._params[block.param]
        cached = self._views.get(block)
        if cached is not None and cached[0] == p.data_ptr() and cached[1].dtype == p.dtype:
            return cached[1]
        view = p.detach().view(-1)[block.start:block.stop]
        self._views[block] = (p.data_ptr(), view)
        return view

    def _buffer(self, slot: int, b: int, w: int = 0) -> torch.Tensor:
        """Reusable temporary ``slot`` (0: z, 1: m, 2: v, 3: z upcast to float32; methods use more) of worker
        ``w``, sized for block ``b``.

        One buffer per slot, dtype, device and worker, as large as the largest block: at most
        3 × chunk_size elements a worker, allocated once instead of a fresh tensor for every block
        (float16/bfloat16 parameters: z in their dtype plus three float32 blocks). Slot 0 has the
        parameter's dtype (so does every slot in :data:`PARAMETER_DTYPE_SLOTS`), the others the dtype
        updates are computed in (:func:`compute_dtype`).
        The per-block views are kept too (views share the buffer's memory), as small problems take
        thousands of steps a second and a lookup is cheaper than slicing anew.
        """
        key = (slot, w, b)
        view = self._buffers.get(key)
        if view is None:
            block = self._blocks[b]
            p = self._params[block.param]

            def dtype_of(q: torch.Tensor) -> torch.dtype:
                return q.dtype if slot in PARAMETER_DTYPE_SLOTS else compute_dtype(q.dtype)

            dtype = dtype_of(p)
            base_key = (slot, w, dtype, p.device)
            buf = self._buffers.get(base_key)
            if buf is None:
                size = max(bl.numel for bl in self._blocks if dtype_of(self._params[bl.param]) == dtype
                           and self._params[bl.param].device == p.device)
                buf = self._buffers[base_key] = torch.empty(size, dtype=dtype, device=p.device)
            view = self._buffers[key] = buf[:block.numel]
        return view

    def _z(self, seed: int, b: int, w: int = 0) -> torch.Tensor:
        """Block ``b`` of ``direction(seed)``, in worker ``w``'s z buffer (valid until its next call)."""
        out = self._buffer(0, b, w)
        return self._samplers[w].block(seed, b, out.numel(), out.dtype, out.device, out=out)

    def _z32(self, seed: int, b: int, w: int = 0) -> torch.Tensor:
        """Block ``b`` of ``direction(seed)`` (drawn in the parameter's dtype, as ``direction`` gives it)
        upcast into worker ``w``'s float32 buffer: the z of a float16/bfloat16 block's update."""
        return self._buffer(3, b, w).copy_(self._z(seed, b, w))

    # ----------------------------------------------------------------------------- seeds
    @property
    def seed_pool(self) -> list[int] | None:
        """The fixed pool of seeds that steps draw from, or ``None`` without a seed budget."""
        if self.seed_budget is None:
            return None
        return [mix_key(self.seed, _POOL_SALT, i) for i in range(self.seed_budget)]

    def seed_for_step(self, step: int, direction: int = 0) -> int:
        """The seed of direction ``direction`` of step ``step`` (both 0-based): a pure function of (seed,
        budget, step, direction). A single-direction step uses direction 0."""
        return seed_for_step(self.seed, self.seed_budget, step, direction)

    def step_seeds(self, step: int) -> list[int]:
        """The seeds of the ``num_directions`` directions of step ``step``."""
        return [seed_for_step(self.seed, self.seed_budget, step, j) for j in range(self.num_directions)]

    @classmethod
    def passes_per_step(cls, num_directions: int = 1) -> int:
        """Forward passes of one step with ``num_directions`` directions: 2q, plus the method's extra ones."""
        return cls.extra_forward_passes + 2 * int(num_directions)

    def direction(self, seed: int) -> list[torch.Tensor]:
        """The direction z for ``seed``, as tensors shaped like the trainable parameters."""
        out = [torch.empty_like(p) for p in self._params]
        for b, block in enumerate(self._blocks):
            out[block.param].view(-1)[block.start:block.stop] = self._z(seed, b)
        return out

    def perturbation(self, seed: int) -> list[torch.Tensor]:
        """What θ is moved along (times ε) for direction ``seed`` in the current state, shaped like the
        parameters: z itself for MeZO-like methods, Σ^{-1/2} z for HiZOO, ZO-AdaMU's momentum-centred draw
        (float32 for float16/bfloat16 parameters)."""
        out = [torch.empty_like(p, dtype=compute_dtype(p.dtype)) for p in self._params]
        for b, block in enumerate(self._blocks):
            out[block.param].view(-1)[block.start:block.stop] = self._perturbation(seed, b, 0, compute=True)
        return out

    @property
    def history(self) -> list[tuple[int, float]]:
        """The (seed, projected gradient c) pairs still in use, oldest first."""
        return list(self._history)

    @property
    def generated_elements(self) -> int:
        """Direction elements generated so far (a regeneration of all blocks counts every element)."""
        return sum(s.generated_elements for s in self._samplers)

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self._params)

    # ----------------------------------------------------------------------------- SPSA
    def _evaluate(self, closure: Closure) -> torch.Tensor:
        """One closure call, counted. With a process group the finiteness check waits for the average
        (:meth:`_reduce`), so that every rank fails alike."""
        self.forward_passes += 1
        return check_loss(closure(), f"{type(self).__name__} step {self.steps}", RESTORED,
                          finite=self.process_group is None)

    def _reduce(self, *losses: torch.Tensor, after: str = RESTORED) -> tuple[torch.Tensor, ...]:
        """The losses averaged over the process group (one all-reduce of a float64 vector), each checked
        finite; the losses themselves without a group."""
        if self.process_group is None:
            return losses
        import torch.distributed as dist

        local = torch.stack([loss.to(torch.float64) for loss in losses])
        total = local.clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM, group=self.process_group)
        mean = total / dist.get_world_size(self.process_group)
        for i, value in enumerate(mean.tolist()):
            if not math.isfinite(value):
                size = dist.get_world_size(self.process_group)
                rank = dist.get_rank(self.process_group)
                raise NonFiniteLossError(
                    f"{type(self).__name__} step {self.steps}: the loss averaged over the {size} processes of the "
                    f"group is {value} (this process, rank {rank}, had {float(local[i])}); every process fails "
                    f"this step alike. The losses must be finite. {after}")
        return tuple(mean.unbind())

    def _check_group(self) -> None:
        """``ValueError`` unless every rank of the group has the same settings, counters and parameter
        shapes (a collective call: one ``all_gather_object``)."""
        import torch.distributed as dist

        name = type(self).__name__
        mine = {"settings": self._config(), "steps": self.steps, "forward_passes": self.forward_passes,
                "lr": [g["lr"] for g in self.param_groups], "weight_decay": [g["weight_decay"] for g in self.param_groups],
                "shapes": [tuple(p.shape) for p in self._params], "dtypes": [str(p.dtype) for p in self._params]}
        size = dist.get_world_size(self.process_group)
        gathered: list[Any] = [None] * size
        dist.all_gather_object(gathered, mine, group=self.process_group)
        self._group_checked = True
        differ = [r for r in range(1, size) if gathered[r] != gathered[0]]
        if not differ:
            return

        def what(r: int) -> str:
            a, b = gathered[0], gathered[r]
            out = []
            for key in a:
                if key == "settings":
                    out += [f"{k}={b[key].get(k)!r} (rank 0: {v!r})" for k, v in a[key].items() if b[key].get(k) != v]
                elif a[key] != b[key]:
                    out.append(f"{key}={checks.short(b[key])} (rank 0: {checks.short(a[key])})")
            return f"rank {r} has " + ", ".join(out)

        raise ValueError(
            f"{name}: the processes of the group must draw the same directions and apply the same updates, but "
            f"rank{'s' if len(differ) > 1 else ''} {', '.join(map(str, differ))} differ{'' if len(differ) > 1 else 's'} "
            f"from rank 0: {'; '.join(what(r) for r in differ)}; allowed: the same seed, seed budget, "
            "hyperparameters, step counters and parameter shapes on every rank")

    def _perturbation(self, seed: int, b: int, w: int, compute: bool = False) -> torch.Tensor:
        """Block ``b`` of the perturbation along direction ``seed`` (θ moves by ε times it), in a buffer of
        worker ``w`` (valid until its next use): z itself here; subclasses change it (HiZOO: z / sqrt(Σ)).
        With ``compute``, in the dtype updates are computed in (float32 for float16/bfloat16 blocks)."""
        return self._z32(seed, b, w) if compute and self._low[b] else self._z(seed, b, w)

    def _perturb(self, seed: int, scale: float, done: list[int] | None = None,
                 only: set[int] | None = None) -> None:
        """θ += scale · perturbation(seed), block by block (only the blocks in ``only``, if given); each
        block is appended to ``done`` once it has moved."""
        def one(b: int, w: int) -> None:
            self._view(self._blocks[b]).add_(self._perturbation(seed, b, w), alpha=scale)
            if done is not None:
                done.append(b)

        self._for_blocks(one, only)

    def _spsa(self, closure: Closure, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """L(θ + εz) and L(θ − εz); θ is left at θ − εz.

        On any error (in the closure, a non-finite loss, or a perturbation that fails half way) every
        block is moved back by what it was moved, to within round-off (:data:`RESTORED`), and the error
        is re-raised with a note saying so.
        """
        eps = self.eps
        before, after, done = 0.0, eps, []  # blocks in ``done`` are at θ + after·z, the others at θ + before·z
        try:
            self._perturb(seed, eps, done)
            loss_plus = self._evaluate(closure)
            before, after, done = eps, -eps, []
            self._perturb(seed, -2 * eps, done)
            loss_minus = self._evaluate(closure)
            loss_plus, loss_minus = self._reduce(loss_plus, loss_minus)
        except BaseException as exc:
            self._move_back(seed, before, after, set(done))
            if not isinstance(exc, NonFiniteLossError):
                exc.add_note(f"{type(self).__name__} step {self.steps}: {RESTORED}")
            raise
        return loss_plus, loss_minus

    def _check_estimate(self, seed: int, c: float, loss_plus: torch.Tensor, loss_minus: torch.Tensor,
                        what: str = "the projected gradient c = (L+ − L−)/(2ε)") -> None:
        """Finite losses can still give a non-finite estimate (their difference overflows, or ε is tiny):
        θ (at θ − εz) is moved back and ``NonFiniteLossError`` raised, never a step with c = ±inf/NaN."""
        if math.isfinite(c):
            return
        self._perturb(seed, self.eps)
        raise NonFiniteLossError(
            f"{type(self).__name__} step {self.steps}: {what} is {c} (L+ = {float(loss_plus):.6g}, "
            f"L− = {float(loss_minus):.6g}, ε = {self.eps:g}); it must be finite: lower the loss's scale or raise "
            f"eps. {RESTORED}")

    def _move_back(self, seed: int, before: float, after: float, moved: set[int]) -> None:
        """Undo a perturbation: blocks in ``moved`` are at θ + after·z, the others at θ + before·z."""
        if len(moved) == len(self._blocks):
            self._perturb(seed, -after)
            return
        if after and moved:
            self._perturb(seed, -after, only=moved)
        if before:
            self._perturb(seed, -before, only=set(range(len(self._blocks))) - moved)

    @torch.no_grad()
    def step(self, closure: Closure | None = None) -> torch.Tensor:  # type: ignore[override]
        """One step; ``closure()`` returns the loss on the current batch. Returns (L+ + L−)/2 (averaged over
        the directions when there are several)."""
        if closure is None:
            raise ValueError(f"{type(self).__name__}.step needs a closure that returns the loss")
        if self.process_group is not None and not self._group_checked:
            self._check_group()
        base = self._base_loss(closure)
        seeds = self.step_seeds(self.steps)
        entry: tuple = ()
        mean = None
        for j, seed in enumerate(seeds):
            if j:
                self._perturb(seeds[j - 1], self.eps)  # restore the previous direction
            loss_plus, loss_minus = self._spsa(closure, seed)
            c = (float(loss_plus) - float(loss_minus)) / (2 * self.eps)
            self._check_estimate(seed, c, loss_plus, loss_minus)
            entry += (seed, c, *self._direction_extras(seed, loss_plus, loss_minus, base))
            mean = (loss_plus + loss_minus) / 2 if mean is None else mean + (loss_plus + loss_minus) / 2
        self._apply(entry)
        self.steps += 1
        self.last_log_entry = entry
        return mean if len(seeds) == 1 else mean / len(seeds)

    def _base_loss(self, closure: Closure) -> torch.Tensor | None:
        """Forward passes a step takes before its directions (``extra_forward_passes`` of them); HiZOO's
        L(θ). None here."""
        return None

    def _direction_extras(self, seed: int, loss_plus: torch.Tensor, loss_minus: torch.Tensor,
                          base: torch.Tensor | None) -> tuple:
        """What a direction's losses give besides c, kept in the log entry after (seed, c) (HiZOO: the
        curvature). A non-finite value must move θ back (it is at θ − ε·perturbation) and raise."""
        return ()

    def directions_of(self, entry: tuple) -> list[tuple]:
        """A log entry cut into its directions' parts: [(seed, c, ...extras), ...]."""
        n = self._log_length
        return [tuple(entry[i:i + n]) for i in range(0, len(entry), n)]

    @torch.no_grad()
    def replay(self, entry: tuple) -> None:
        """Re-apply a logged step (``last_log_entry`` of the original run) without calling the model.

        The parameters go through exactly the same in-place operations as in the original step (the
        perturbations included), so replaying a run's log from the same initial weights reproduces
        its parameters and optimizer state bit for bit. This is what makes a ZO checkpoint tiny:
        the initial weights plus 16 bytes a step (and direction).
        """
        name = type(self).__name__
        fields = ("seed", "c", "curvature")[:self._log_length]
        length = self._log_length * self.num_directions
        if not isinstance(entry, (tuple, list)) or len(entry) != length:
            what = f"({', '.join(fields)})" + (f" for each of {self.num_directions} directions"
                                                if self.num_directions > 1 else "")
            raise ValueError(f"{name}.replay: invalid log entry {checks.short(entry)}; allowed: a tuple {what}")
        parts = self.directions_of(tuple(entry))
        for part in parts:
            checks.history_pair(part[:2], f"{name}.replay")
            if any(isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) or v < 0
                   for v in part[2:]):
                raise ValueError(f"{name}.replay: invalid log entry {checks.short(entry)}; allowed: a finite "
                                 "curvature >= 0")
        for j, part in enumerate(parts):
            expected = self.seed_for_step(self.steps, j)
            if part[0] != expected:
                raise ValueError(f"{name}.replay: the log's step {self.steps} has seed {part[0]}, but this "
                                 f"optimizer draws {expected} there (other seed or seed budget?)")
        for j, part in enumerate(parts):
            if j:
                self._perturb(parts[j - 1][0], self.eps)
            self._perturb(part[0], self.eps)
            self._perturb(part[0], -2 * self.eps)
        self._apply(tuple(entry))
        self.steps += 1
        self.forward_passes += self.forward_passes_per_step
        self.last_log_entry = tuple(entry)

    def _apply(self, entry: tuple) -> None:
        """The update of a step from its log entry (θ is at θ − ε·perturbation of its last direction):
        restore θ and apply the method's update. Subclasses implement it."""
        raise NotImplementedError

    # ----------------------------------------------------------------------------- shared update pieces
    def _restore_decay(self, b: int, z: torch.Tensor) -> tuple[torch.Tensor, float]:
        """θ_b += ε z_b (undo the last perturbation), then θ_b *= 1 − ηλ. Returns (θ_b view, lr)."""
        block = self._blocks[b]
        view = self._view(block)
        view.add_(z, alpha=self.eps)
        group = self._group_of[block.param]
        if group["weight_decay"]:
            view.mul_(1 - group["lr"] * group["weight_decay"])
        return view, group["lr"]

    def _restore_decay32(self, b: int, z: torch.Tensor, out: torch.Tensor) -> tuple[torch.Tensor, float]:
        """:meth:`_restore_decay` of a float16/bfloat16 block, computed in the float32 buffer ``out``:
        ``out`` = (θ_b + ε z_b)(1 − ηλ), the parameter itself untouched. Returns (out, lr); the caller
        writes its update into ``out`` and copies it to the parameter (one rounding)."""
        block = self._blocks[b]
        out.copy_(self._view(block)).add_(z, alpha=self.eps)
        group = self._group_of[block.param]
        if group["weight_decay"]:
            out.mul_(1 - group["lr"] * group["weight_decay"])
        return out, group["lr"]

    def _estimate_block(self, pairs: list[tuple], b: int, w: int, out: torch.Tensor) -> torch.Tensor:
        """Block ``b`` of the averaged estimate ĝ = (1/q) Σ_j c_j·perturbation_j into ``out`` (in the
        dtype updates are computed in); ``pairs`` are the directions' (seed, c, ...)."""
        q = len(pairs)
        for j, (seed, c, *_) in enumerate(pairs):
            z = self._perturbation(seed, b, w, compute=True)
            if j == 0:
                torch.mul(z, c / q, out=out)
            else:
                out.add_(z, alpha=c / q)
        return out

    def _sgd_update(self, pairs: list[tuple], scale: float = 1.0) -> None:
        """MeZO's update fused with the restore: θ ← θ − η·scale·(ĝ) − ηλθ, ĝ = c z (one direction) or
        the average over the directions."""
        low = self._low
        if len(pairs) == 1:
            seed, c = pairs[0][:2]

            def one(b: int, w: int) -> None:
                if low[b]:  # float16/bfloat16: computed in float32, one rounding
                    z = self._z32(seed, b, w)
                    theta, lr = self._restore_decay32(b, z, self._buffer(1, b, w))
                    self._view(self._blocks[b]).copy_(theta.add_(z.mul_(c), alpha=-(lr * scale)))
                    return
                z = self._z(seed, b, w)
                view, lr = self._restore_decay(b, z)
                view.add_(z.mul_(c), alpha=-(lr * scale))
        else:
            last = pairs[-1][0]

            def one(b: int, w: int) -> None:
                if low[b]:
                    theta, lr = self._restore_decay32(b, self._z32(last, b, w), self._buffer(1, b, w))
                else:
                    theta, lr = self._restore_decay(b, self._z(last, b, w))
                theta.add_(self._estimate_block(pairs, b, w, self._buffer(4, b, w)), alpha=-(lr * scale))
                if low[b]:
                    self._view(self._blocks[b]).copy_(theta)

        self._for_blocks(one)

    # ----------------------------------------------------------------------------- state
    def _config(self) -> dict[str, Any]:
        return {"eps": self.eps, "seed": self.seed, "seed_budget": self.seed_budget,
                "chunk_size": self.chunk_size, "distribution": self.distribution,
                "num_directions": self.num_directions}

    def state_dict(self) -> dict[str, Any]:
        sd = super().state_dict()
        sd["zeroth_order"] = {
            "optimizer": type(self).__name__,
            "config": self._config(),
            "steps": self.steps,
            "forward_passes": self.forward_passes,
            "history": [(int(s), float(c)) for s, c in self._history],
            "generated_elements": self.generated_elements,
            "shapes": [list(p.shape) for p in self._params],
        }
        return sd

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Load a state from :meth:`state_dict`, after checking all of it; on any error nothing changes.

        Checked: it is this optimizer class's state (its name, its settings' names) over the same
        parameter layout (param groups of the same sizes, the same trainable shapes); every setting and
        every group's lr and weight decay against the registry's specs; the counters are integers >= 0;
        the history holds at most min(steps, K) (seed, c) pairs (K = 1 except AdaMeZO's horizon) with
        finite c and exactly the seeds these settings draw at those steps; per-parameter tensors are
        finite, parameter-shaped and in range. A ``ValueError`` names the key, the value and what is
        allowed.
        """
        name = type(self).__name__
        where = f"{name}.load_state_dict"
        if not isinstance(state_dict, Mapping):
            raise ValueError(f"{where}: expected the dict that state_dict() returns, got {checks.short(state_dict)}")
        state_dict = dict(state_dict)
        for pre_hook in self._optimizer_load_state_dict_pre_hooks.values():
            result = pre_hook(self, state_dict)
            if result is not None:
                state_dict = result
        new = self._checked_state(state_dict, where)
        # Everything is valid: only now does anything change.
        for key, value in new["config"].items():
            setattr(self, key, value)
        self.forward_passes_per_step = self.passes_per_step(self.num_directions)
        self.steps = new["steps"]
        self.forward_passes = new["forward_passes"]
        self._history = new["history"]
        self.__setstate__({"state": new["state"], "param_groups": new["param_groups"]})
        self._samplers = []
        self._layout()
        self._samplers[0].generated_elements = new["generated_elements"]
        self._group_checked = False  # the ranks' loaded states are compared at the next step
        for post_hook in self._optimizer_load_state_dict_post_hooks.values():
            post_hook(self)

    def _checked_state(self, sd: dict[str, Any], where: str) -> dict[str, Any]:
        """Everything :meth:`load_state_dict` assigns, checked and converted; raises ``ValueError``."""
        name = type(self).__name__
        if isinstance(sd, Mapping) and "first_order" in sd and "zeroth_order" not in sd:
            raise ValueError(f"{where}: this is a first-order optimizer's state (Adam/AdamW), not {name}'s")
        checks.keys(sd, where, "the state dict", ("state", "param_groups", "zeroth_order"))
        zo = checks.keys(sd["zeroth_order"], where, "'zeroth_order'", ("config", "steps", "forward_passes", "history"),
                         ("optimizer", "generated_elements", "shapes"))
        if "optimizer" in zo and zo["optimizer"] != name:
            raise ValueError(f"{where}: this is the state of {checks.short(zo['optimizer'])}, not of {name}; "
                             f"allowed: a {name} state")
        expected = set(self._config())
        saved = zo["config"]
        if isinstance(saved, Mapping) and "num_directions" not in saved:
            saved = {**saved, "num_directions": 1}  # a state from before q-SPSA: one direction a step
        if not isinstance(saved, Mapping) or set(saved) != expected:
            found = ", ".join(sorted(map(str, saved))) if isinstance(saved, Mapping) else checks.short(saved)
            raise ValueError(f"{where}: the state's settings ({found}) are not {name}'s "
                             f"({', '.join(sorted(expected))}): it is another optimizer's state")
        specs = self.hyperparameters
        config = {key: checks.hyper(key, value, specs, where) for key, value in saved.items()}
        steps = checks.count(zo["steps"], where, "steps")
        forward_passes = checks.count(zo["forward_passes"], where, "forward_passes")
        generated = checks.count(zo.get("generated_elements", 0), where, "generated_elements")
        history = self._checked_history(zo["history"], config, steps, where)
        if "shapes" in zo:
            self._check_shapes(zo["shapes"], where)
        groups, ids = checks.groups(sd["param_groups"], self.param_groups, specs, self.group_keys, where)
        entries = checks.state_entries(sd["state"], ids, where)
        params = [p for g in self.param_groups for p in g["params"]]
        trainable = {id(p) for p in self._params}
        state: defaultdict[torch.Tensor, dict] = defaultdict(dict)
        for pid, p in zip(ids, params):
            entry = dict(entries.get(pid, {}))
            here = f"{where}: state of parameter {pid}"
            if id(p) not in trainable:
                if entry:
                    raise ValueError(f"{here}: the parameter is not trained (requires_grad=False) but has state "
                                     f"{', '.join(map(repr, entry))}; allowed: none")
                continue
            checked = self._checked_param_state(p, entry, here)
            if checked:
                state[p] = checked
        self._check_state_coverage(state, where)
        return {"config": config, "steps": steps, "forward_passes": forward_passes, "history": history,
                "generated_elements": generated, "param_groups": groups, "state": state}

    def _history_cap(self, config: dict[str, Any]) -> int:
        """The most steps whose (seed, c) pairs the history holds (AdaMeZO: its horizon)."""
        return 1

    def _checked_history(self, history: Any, config: dict[str, Any], steps: int, where: str) -> list:
        if not isinstance(history, (list, tuple)):
            raise ValueError(f"{where}: invalid history={checks.short(history)}; allowed: a list of (seed, c) pairs")
        keeps = self._history_cap(config)
        q = config["num_directions"]
        most = min(steps, keeps) * q
        if len(history) > most or len(history) % q:
            per = f" ({q} pairs a step, one per direction)" if q > 1 else ""
            raise ValueError(f"{where}: the history has {len(history)} (seed, c) pairs; allowed: at most "
                             f"{most}{per}, the smaller of steps ({steps}) and the pairs "
                             f"{type(self).__name__} keeps ({keeps * q})")
        pairs = [checks.history_pair(pair, f"{where}: history pair {i}") for i, pair in enumerate(history)]
        first = steps - len(pairs) // q
        for i, (seed, _) in enumerate(pairs):
            step, direction = first + i // q, i % q
            drawn = seed_for_step(config["seed"], config["seed_budget"], step, direction)
            if seed != drawn:
                which = f" direction {direction}" if q > 1 else ""
                raise ValueError(f"{where}: history pair {i} has seed {seed}, but with seed={config['seed']} and "
                                 f"seed_budget={config['seed_budget']} step {step}{which} draws {drawn}; allowed: "
                                 "the seeds of the last steps (the history does not belong to these settings)")
        return pairs

    def _check_shapes(self, shapes: Any, where: str) -> None:
        mine = [list(p.shape) for p in self._params]
        if (not isinstance(shapes, (list, tuple))
                or not all(isinstance(s, (list, tuple)) and all(isinstance(n, numbers.Integral) for n in s)
                           for s in shapes)):
            raise ValueError(f"{where}: invalid shapes={checks.short(shapes)}; allowed: a list of parameter shapes")
        theirs = [[int(n) for n in s] for s in shapes]
        if theirs != mine:
            if len(theirs) != len(mine):
                detail = f"{len(theirs)} trainable tensors in the state, {len(mine)} here"
            else:
                i = next(i for i, (a, b) in enumerate(zip(theirs, mine)) if a != b)
                detail = f"trainable tensor {i} has shape {tuple(theirs[i])} in the state, {tuple(mine[i])} here"
            raise ValueError(f"{where}: the parameter layout differs ({detail}); allowed: the state of an "
                             "optimizer over parameters of the same shapes, in the same order")

    def _checked_param_state(self, p: torch.Tensor, entry: dict, where: str) -> dict:
        """The checked state of one trainable parameter. MeZO and AdaMeZO keep none."""
        if entry:
            raise ValueError(f"{where}: {type(self).__name__} keeps no per-parameter state, but the state has "
                             f"{', '.join(map(checks.short, entry))}; allowed: none")
        return {}

    def _check_state_coverage(self, state: dict, where: str) -> None:
        """Checks across parameters (ZO-Adam: all have moments or none; HiZOO: all have Σ)."""
