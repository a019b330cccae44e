"""Memory of one optimizer step by category, measured from the tensors themselves (CPU or CUDA).

    with StepMemory(model, optimizer) as mem:
        optimizer.step(mem.closure(lambda: loss_fn(model, batch)))
    mem.result()   # {"weights": ..., "gradients": ..., ..., "peak_total": ...} in bytes

Every tensor storage alive during the step is counted once (views share their storage), from the
moment it is allocated until it is freed, in one category:

- ``weights``: the model's parameters and buffers.
- ``gradients``: the parameters' ``.grad`` (first-order methods only).
- ``optimizer_state``: what the optimizer keeps from step to step (``optimizers.state_bytes``: Adam's
  and ZO-Adam's m and v, HiZOO's Σ, a zeroth-order method's 16 bytes per (seed, c) pair).
- ``activations_saved``: tensors that autograd saved for the backward pass during the forward
  (``torch.autograd.graph.saved_tensors_hooks``; parameters and the input batch excluded).
- ``forward_working``: every other tensor the forward passes allocate (freed as soon as used).
- ``backward_working``: tensors the backward pass allocates that are not parameter gradients.
- ``optimizer_temporaries``: tensors the optimizer allocates outside the forward and backward
  passes, and its reusable block buffers (MeZO: one direction block a worker; AdaMeZO: three).

Each category is its own maximum during the step; ``peak_total`` is the highest total of all tracked
tensors at any one moment of the step (so it is at most the sum of the categories).

How: a ``TorchDispatchMode`` sees every tensor an operator returns and follows its storage with a weak
reference, as ``torch.distributed._tools.mem_tracker.MemTracker`` does. That tracker itself does not
serve here (checked on torch 2.13): it labels everything allocated inside ``optimizer.step()`` as
optimizer state, and this project's optimizers run the forward (and, for Adam, the backward) inside
``step(closure)``; it refuses a second forward of the same module within one tracked step, which
every zeroth-order step takes; and its "activations" are all forward outputs, not what is saved for
backward. Ops run on another thread (the optimizers' block workers, used for CPU models over 4 M
parameters) are not seen by a dispatch mode; the block buffers they fill are counted from the
optimizer, which holds them.

On CUDA, ``torch.cuda.max_memory_allocated`` during the step is recorded beside (``cuda_peak_allocated``);
the process's resident set (``peak_memory_bytes`` in the records) is a separate, coarser figure.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

CATEGORIES = ("weights", "gradients", "optimizer_state", "activations_saved", "forward_working",
              "backward_working", "optimizer_temporaries")
"""The categories of :class:`StepMemory`, in the order the page stacks them."""

LABELS = {
    "weights": "weights",
    "gradients": "gradients",
    "optimizer_state": "optimizer state",
    "activations_saved": "activations saved for backward",
    "forward_working": "forward working memory",
    "backward_working": "backward working memory",
    "optimizer_temporaries": "optimizer temporaries",
}


_CUDA_PEAK: dict[int, int] = {}  # the peak allocated bytes of each CUDA device before this module reset it


def cuda_peak_allocated(device: torch.device) -> int:
    """``torch.cuda.max_memory_allocated(device)`` since the process started, although
    :class:`StepMemory` resets the device's peak statistics to measure a single step."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    return max(_CUDA_PEAK.get(index, 0), int(torch.cuda.max_memory_allocated(index)))


def _reset_cuda_peak(device: torch.device) -> None:
    index = device.index if device.index is not None else torch.cuda.current_device()
    torch.cuda.synchronize(index)
    _CUDA_PEAK[index] = cuda_peak_allocated(device)
    torch.cuda.reset_peak_memory_stats(index)


def _storage(t: torch.Tensor) -> torch.UntypedStorage | None:
    try:
        return t.untyped_storage()
    except (RuntimeError, NotImplementedError):  # sparse and other tensors without one storage
        return None


def _nbytes(st: torch.UntypedStorage) -> int:
    return int(st.nbytes())


def optimizer_buffers(optimizer: Any) -> list[torch.Tensor]:
    """The reusable block buffers a zeroth-order optimizer of this project holds (empty for others)."""
    return [t for t in getattr(optimizer, "_buffers", {}).values() if isinstance(t, torch.Tensor)]


def state_tensors(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [t for s in optimizer.state.values() for t in s.values() if isinstance(t, torch.Tensor)]


class StepMemory(TorchDispatchMode):
    """Track the tensors of one optimizer step by category (see the module docstring).

    Use as a context manager around ``optimizer.step(mem.closure(loss_closure))``; ``result()`` gives
    the bytes per category, ``peak_total`` and, on CUDA, ``cuda_peak_allocated``.
    """

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                 state_bytes: Callable[[torch.optim.Optimizer], int] | None = None) -> None:
        super().__init__()
        self.model = model
        self.optimizer = optimizer
        self._state_bytes = state_bytes
        self.live = dict.fromkeys(CATEGORIES, 0)
        self.max = dict.fromkeys(CATEGORIES, 0)
        self.peak = 0
        self._info: dict[int, list] = {}  # id(storage) -> [category, bytes, weakref]
        self._phase = "optimizer_temporaries"  # outside the closure: the optimizer's own work
        self._params = [p for p in model.parameters()]
        self._handles: list[Any] = []
        self._saved_hooks = None
        self._devices = {p.device for p in self._params}
        self._cuda_peak: int | None = None
        self._extra_state = 0

    # ------------------------------------------------------------------ bookkeeping
    def _known(self, st: torch.UntypedStorage) -> list | None:
        info = self._info.get(id(st))
        return info if info is not None and info[2]() is st else None  # an id can be reused after a free

    def _add(self, st: torch.UntypedStorage, category: str) -> None:
        """Count ``st`` in ``category`` from now on (moving it there if it is counted elsewhere)."""
        key = id(st)
        info = self._known(st)
        if info is not None:
            if info[0] != category:
                self._move(info, category)
            return
        size = _nbytes(st)
        info = [category, size, None]
        info[2] = weakref.ref(st, lambda _ref, info=info, key=key: self._free(key, info))
        self._info[key] = info
        self.live[category] += size
        self.max[category] = max(self.max[category], self.live[category])

    def _move(self, info: list, category: str) -> None:
        self.live[info[0]] -= info[1]
        info[0] = category
        self.live[category] += info[1]
        self.max[category] = max(self.max[category], self.live[category])

    def _free(self, key: int, info: list) -> None:
        self.live[info[0]] -= info[1]
        if self._info.get(key) is info:
            del self._info[key]

    def _tag(self, tensors: Iterable[Any], category: str) -> None:
        for t in tensors:
            if isinstance(t, torch.Tensor):
                st = _storage(t)
                if st is not None:
                    self._add(st, category)

    def _total(self) -> int:
        return sum(self.live.values()) + self._extra_state

    def _update_peak(self) -> None:
        total = self._total()
        if total > self.peak:
            self.peak = total

    def _category_of(self, t: torch.Tensor) -> str | None:
        st = _storage(t)
        info = self._known(st) if st is not None else None
        return info[0] if info is not None else None

    # ------------------------------------------------------------------ phases
    def closure(self, fn: Callable[[], Any]) -> Callable[[], Any]:
        """``fn`` run as a forward pass: what it allocates is forward memory; what autograd saves in it
        is counted as activations saved for backward."""

        def forward() -> Any:
            previous, self._phase = self._phase, "forward_working"
            try:
                with torch.autograd.graph.saved_tensors_hooks(self._pack, lambda x: x):
                    return fn()
            finally:
                self._phase = previous

        return forward

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        if self._category_of(t) == "forward_working":
            self._tag([t], "activations_saved")
        return t

    def _grad_hook(self, p: torch.Tensor) -> None:
        if p.grad is not None:
            self._tag([p.grad], "gradients")
            self._update_peak()

    # ------------------------------------------------------------------ the mode
    def __enter__(self) -> StepMemory:
        for d in self._devices:
            if d.type == "cuda":
                _reset_cuda_peak(d)
        self._tag(self._params, "weights")
        self._tag(self.model.buffers(), "weights")
        self._tag([p.grad for p in self._params if p.grad is not None], "gradients")
        self._tag(state_tensors(self.optimizer), "optimizer_state")
        self._tag(optimizer_buffers(self.optimizer), "optimizer_temporaries")
        self._extra_state = self._non_tensor_state()
        for p in self._params:
            if p.requires_grad:
                self._handles.append(p.register_post_accumulate_grad_hook(self._grad_hook))
        self._update_peak()
        return super().__enter__()

    def __exit__(self, *exc: Any) -> None:
        super().__exit__(*exc)
        for h in self._handles:
            h.remove()
        self._handles.clear()
        # Buffers made on worker threads (not seen by the mode) are counted as alive for the whole step.
        before = self._total()
        self._tag(optimizer_buffers(self.optimizer), "optimizer_temporaries")
        self.peak += self._total() - before
        self._tag(state_tensors(self.optimizer), "optimizer_state")  # made in this step: state from now on
        self._extra_state = self._non_tensor_state()
        self._update_peak()
        cuda = [d for d in self._devices if d.type == "cuda"]
        if cuda:
            torch.cuda.synchronize(cuda[0])
            self._cuda_peak = sum(int(torch.cuda.max_memory_allocated(d)) for d in cuda)
        self._info.clear()  # drops the weak references and their callbacks: the result is final

    def _non_tensor_state(self) -> int:
        if self._state_bytes is None:
            return 0
        tensors = sum(_nbytes(st) for st in {id(s): s for s in (_storage(t) for t in state_tensors(self.optimizer))
                                             if s is not None}.values())
        return max(0, self._state_bytes(self.optimizer) - tensors)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        phase = self._phase
        if phase == "forward_working" and torch._C._current_autograd_node() is not None:
            phase = "backward_working"
        elif phase == "optimizer_temporaries" and torch._C._current_autograd_node() is not None:
            phase = "backward_working"  # backward called by the optimizer after the closure returned
        flat, _ = tree_flatten(out)
        for t in flat:
            if isinstance(t, torch.Tensor):
                st = _storage(t)
                if st is not None and self._known(st) is None:  # new memory (in-place ops return known storages)
                    self._add(st, phase)
        self._update_peak()
        return out

    # ------------------------------------------------------------------ answer
    def result(self) -> dict[str, int]:
        """Bytes per category (each its maximum during the step), ``peak_total``, ``optimizer_buffers``
        (the reusable block buffers, counted in optimizer_temporaries), ``optimizer_workers`` (the block
        workers that have buffers), ``weights_trainable`` (the bytes of the parameters with
        ``requires_grad``, part of ``weights``) and, on CUDA, ``cuda_peak_allocated``."""
        out = dict(self.max)
        out["optimizer_state"] = max(out["optimizer_state"] + self._extra_state,
                                     self._state_bytes(self.optimizer) if self._state_bytes else 0)
        out["peak_total"] = self.peak
        buffers = {id(st): st for st in (_storage(t) for t in optimizer_buffers(self.optimizer)) if st is not None}
        out["optimizer_buffers"] = sum(_nbytes(st) for st in buffers.values())  # part of optimizer_temporaries
        out["optimizer_workers"] = len(getattr(self.optimizer, "_samplers", ())) or 1
        # the trainable part of the weights (all of them in full fine-tuning; LoRA: the adapters)
        out["weights_trainable"] = sum(p.numel() * p.element_size() for p in self._params if p.requires_grad)
        if self._cuda_peak is not None:
            out["cuda_peak_allocated"] = self._cuda_peak
        return out


def measure_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, loss: Callable[[], Any],
                 state_bytes: Callable[[torch.optim.Optimizer], int] | None = None) -> tuple[Any, dict[str, int]]:
    """Take one ``optimizer.step`` on ``loss`` while measuring it; returns (the step's loss, the memory)."""
    with StepMemory(model, optimizer, state_bytes) as mem:
        value = optimizer.step(mem.closure(loss))
    return value, mem.result()


# ------------------------------------------------------------------------------------- extrapolation
OPT_SIZES: dict[str, dict[str, int]] = {
    # The published OPT configurations (Zhang et al. 2022): vocabulary 50272, 2048 positions, tied embeddings.
    "OPT-125m": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "ffn_dim": 3072},
    "OPT-1.3B": {"hidden_size": 2048, "num_hidden_layers": 24, "num_attention_heads": 32, "ffn_dim": 8192},
    "OPT-13B": {"hidden_size": 5120, "num_hidden_layers": 40, "num_attention_heads": 40, "ffn_dim": 20480},
}
"""The model sizes the LLM page extrapolates to (the paper's models)."""

EXTRAPOLATION_FORMULA = (
    "P parameters of s bytes (the run's dtype), the run's batch B × T tokens; from the model configuration: "
    "weights = s·P; gradients = s·P for first-order Adam, 0 for zeroth-order methods; optimizer state = the "
    "measured bytes per parameter × P (Adam, ZO-Adam: 8 B, HiZOO: 4 B), or the measured bytes as they are when "
    "they do not grow with the model (MeZO: one (seed, c) pair, 16 B; AdaMeZO: K pairs, 16·K B); optimizer "
    "temporaries = the reusable block buffers × (target block ÷ bundled block) × the block workers (a block is "
    "min(chunk_size, largest tensor) elements; one worker on CUDA and for models under 4 M parameters, one per "
    "CPU thread above), plus the rest of the measured temporaries: whole-model ones (ZO-Adam's gradient) × P, "
    "what remains × the largest tensor for torch's per-tensor Adam update (Adam, ZO-Adam) or × the block for "
    "the others; activations saved for backward and forward/backward working memory = what a forward (and, for "
    "Adam, a backward) pass of the target configuration allocates at B × T, counted by the same tracker on "
    "PyTorch's meta device (shapes only, no memory); peak = weights + state + the larger of (forward working "
    "memory + block buffers) and the temporaries for zeroth-order methods, and for Adam the larger of (the "
    "passes' peak + state) and (weights + gradients + state + temporaries).")


PER_TENSOR_UPDATES = {"adam": True, "adamw": True, "zo-adam": True}
"""Optimizers whose update runs torch's single-tensor Adam on whole parameters (its temporaries are the size
of the largest tensor); the others update block by block."""


def model_facts(model: torch.nn.Module) -> dict[str, int]:
    """What the extrapolation needs of a model: parameters, its largest tensor (elements), bytes per element."""
    params = list(model.parameters())
    return {"parameters": sum(p.numel() for p in params), "largest_tensor": max(p.numel() for p in params),
            "dtype_bytes": params[0].element_size()}


def opt_config(name: str, dtype: str = "float32") -> Any:
    """The ``OPTConfig`` of one of :data:`OPT_SIZES` (no dropout, as the demo runs it)."""
    from transformers import OPTConfig

    if name not in OPT_SIZES:
        raise ValueError(f"unknown model size {name!r}; allowed: {', '.join(OPT_SIZES)}")
    shape = OPT_SIZES[name]
    return OPTConfig(vocab_size=50272, max_position_embeddings=2048, word_embed_proj_dim=shape["hidden_size"],
                     do_layer_norm_before=True, dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
                     tie_word_embeddings=True, dtype=dtype, **shape)


class _NoOptimizer(torch.optim.Optimizer):
    def __init__(self, params: Iterable[torch.Tensor]) -> None:
        super().__init__(params, {})

    def step(self, closure: Callable[[], Any]) -> Any:  # type: ignore[override]
        return closure()


class _UnpaddedMask(TorchDispatchMode):
    """A meta tensor has no values. transformers before 5.2x (5.17 on the GPU machine) builds an all-ones
    attention mask when none is given and asks ``bool(mask.sum() == mask.numel())`` to skip it in SDPA;
    a boolean asked of a meta tensor is answered True here, what the real all-ones mask answers, so the
    shapes that follow are those of an unpadded batch (as with newer transformers, which builds no mask)."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if (func is torch.ops.aten._local_scalar_dense.default and args[0].is_meta
                and args[0].dtype == torch.bool):
            return True
        return func(*args, **(kwargs or {}))


def passes_memory(config: Any, batch_size: int, tokens: int, first_order: bool, loss: str = "verbalizer",
                  dtype: torch.dtype = torch.float32) -> dict[str, int]:
    """Memory of a forward pass (and, if ``first_order``, the backward pass) of a causal LM built from
    ``config`` on PyTorch's meta device (shapes only: no memory is used, a 13B model takes about a second).

    ``loss``: ``"verbalizer"`` scores the last position only, as the demo does (``llm_demo.tasks.loss_fn``);
    ``"lm"`` is the language-model loss over every position (``benchmarks/optimizer_step.py``). Returns
    weights, gradients, activations_saved, forward_working, backward_working and ``peak_total`` in bytes,
    and ``facts`` (``model_facts`` of the built model).
    """
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM

    if loss not in ("verbalizer", "lm"):
        raise ValueError(f"unknown loss {loss!r}; allowed: 'verbalizer', 'lm'")
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.eval()
    ids = torch.zeros(batch_size, tokens, dtype=torch.long, device="meta")
    labels = torch.zeros(batch_size, dtype=torch.long, device="meta")

    def closure() -> torch.Tensor:
        # No attention mask: a meta tensor has no values to test for padding (the demo's B × T × T mask
        # of booleans is a few kilobytes). The verbalizer loss is llm_demo.tasks.loss_fn's.
        with torch.set_grad_enabled(first_order), _UnpaddedMask():
            if loss == "lm":
                return model(input_ids=ids, labels=ids).loss
            logits = model(input_ids=ids, logits_to_keep=1).logits[:, -1, :]
            return F.cross_entropy(logits[:, :2].float(), labels)

    with StepMemory(model, _NoOptimizer(model.parameters())) as mem:
        value = mem.closure(closure)()
        if first_order:
            value.backward()
        del value
    out = mem.result()
    out["facts"] = model_facts(model)  # type: ignore[assignment]
    return out


def extrapolate(measured: dict[str, int], optimizer: str, source: dict[str, int], passes: dict[str, Any],
                chunk_size: int = 2**20, workers: int = 1) -> dict[str, int]:
    """The memory of ``optimizer``'s step on a target model, from a step measured on a source model.

    ``measured``: a record's ``memory`` (the source model's step); ``source``: ``model_facts`` of the
    source model; ``passes``: :func:`passes_memory` of the target configuration at the batch shape wanted;
    ``workers``: the zeroth-order block workers on the target (1 on CUDA). The formula is
    :data:`EXTRAPOLATION_FORMULA`.
    """
    from optimizers import get_entry

    target = passes["facts"]
    zeroth = get_entry(optimizer).zeroth_order
    scale_p = target["parameters"] / source["parameters"]
    state = measured["optimizer_state"]
    state = round(state * scale_p) if state >= source["parameters"] else state

    def block(facts: dict[str, int]) -> int:
        return min(chunk_size, facts["largest_tensor"])

    # The block buffers scale with the block and the workers; the rest of the temporaries: whole-model ones
    # (ZO-Adam's gradient for every parameter) with P, and what remains with the unit the update works on.
    source_weights = source["parameters"] * source["dtype_bytes"]
    per_worker = workers / measured.get("optimizer_workers", 1)
    buffers = round(measured.get("optimizer_buffers", 0) * block(target) / block(source) * per_worker)
    rest = max(0, measured["optimizer_temporaries"] - measured.get("optimizer_buffers", 0))
    whole = rest // source_weights
    unit = PER_TENSOR_UPDATES.get(optimizer, False)
    scale_unit = (target["largest_tensor"] / source["largest_tensor"] if unit else
                  block(target) / block(source) * per_worker)
    temporaries = buffers + round(whole * scale_p * source_weights + (rest - whole * source_weights) * scale_unit)
    weights = target["parameters"] * target["dtype_bytes"]
    out = {"weights": weights, "gradients": 0 if zeroth else weights, "optimizer_state": state,
           "activations_saved": 0 if zeroth else passes["activations_saved"],
           "forward_working": passes["forward_working"],
           "backward_working": 0 if zeroth else passes["backward_working"],
           "optimizer_temporaries": temporaries}
    if zeroth:
        out["peak_total"] = weights + state + max(passes["forward_working"] + buffers, temporaries)
    else:
        out["peak_total"] = max(passes["peak_total"] + state, 2 * weights + state + temporaries)
    return out
