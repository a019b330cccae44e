"""A Hugging Face ``transformers.Trainer`` that trains with any zeroth-order optimizer of the registry.

    from transformers import TrainingArguments
    from llm_demo.trainer import ZOTrainer, prompt_datasets
    train, dev = prompt_datasets("assets/graded", tokenizer)           # or any dataset the model takes
    args = TrainingArguments("out", max_steps=1000, learning_rate=3e-4, per_device_train_batch_size=16,
                             eval_strategy="steps", eval_steps=25, logging_steps=25, seed=0, report_to=[])
    ZOTrainer(model, args, train_dataset=train, eval_dataset=dev, zo_optimizer="mezo").train()

What it changes in ``Trainer`` (transformers 5.x, its source read for this):

- ``create_optimizer`` builds ``make_optimizer(zo_optimizer, ...)`` on the trainable parameters (LoRA
  adapters only for a ``peft`` model), with ``learning_rate``, ``weight_decay`` (biases and layer norms
  not decayed: ``optimizers.weight_decay_groups``, as ``llm_demo.finetune``) and ``seed`` from the
  ``TrainingArguments``; its other hyperparameters come from ``zo_hyper``. Under ``torchrun`` (a
  process group of more than one process) it passes ``process_group=torch.distributed.group.WORLD``, so
  the optimizer averages the closure's losses over the processes; an optimizer without that keyword
  is refused, because every process would otherwise take its own step.
- ``training_step`` takes the whole zeroth-order step, ``optimizer.step(closure)``, with the closure
  ``compute_loss(model, inputs)`` under ``torch.no_grad()`` and the model in eval mode (both perturbed
  passes must see the same function: no dropout). No backward pass. It returns (L+ + L−)/2, the loss
  ``Trainer`` logs. ``Trainer``'s own ``optimizer.step()`` after it only checks that this step was
  taken (``TakenStep``), and its learning-rate scheduler (``lr_scheduler_type``, ``warmup_steps``) then
  steps the zeroth-order optimizer's lr as usual.
- ``log`` adds ``forward_passes`` (the optimizer's count) and ``projected_grad`` (the last step's c =
  (L+ − L−)/(2ε), averaged over its directions), and drops ``grad_norm`` (no gradient: Trainer would log
  0); ``zo_log`` keeps the loss, the forward passes and c for every step.
- For the prompt-classification tasks of ``llm_demo`` (``PromptDataset``): the loss is
  ``llm_demo.tasks.loss_fn``, evaluation gives ``eval_loss`` and ``eval_accuracy``
  (``llm_demo.tasks.evaluate``), and the training batches are ``llm_demo.finetune``'s batch order
  (``LoopOrderSampler``), so the same seed and hyperparameters give our own loop's records.

``TrainingArguments`` that cannot mean anything without a backward pass are refused in ``__init__``
(``REFUSED``, each with its reason). ``max_grad_norm`` is ignored (there is no gradient to clip), and
so are ``optim``/``optim_args`` (the optimizer is ``zo_optimizer``). The multi-process path goes through
``Trainer``'s own distributed setup: each process collates the global batch and keeps its rows, the
optimizer averages the losses over ``process_group``; 2 gloo processes equal one process (tested).
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import math
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer, TrainingArguments

from optimizers import get_entry, make_optimizer, weight_decay_groups

from . import distributed
from .finetune import batch_indices
from .tasks import Batch, encode, evaluate, load_task, loss_fn, subset

#: TrainingArguments refused with a zeroth-order optimizer: (test on the arguments, the reason).
#: Activation checkpointing's name in the installed transformers: ``gradient_checkpointing`` before
#: ``activation_checkpointing`` replaced it (transformers 5.17, on the GPU machine, has the old name only).
CHECKPOINTING = ("activation_checkpointing" if "activation_checkpointing" in
                 {f.name for f in dataclasses.fields(TrainingArguments)} else "gradient_checkpointing")

REFUSED: dict[str, tuple[Callable[[TrainingArguments], bool], str]] = {
    "gradient_accumulation_steps": (
        lambda a: a.gradient_accumulation_steps > 1,
        "a zeroth-order step evaluates its two perturbed losses on one batch, and there is no gradient to "
        "accumulate; use a larger per_device_train_batch_size instead (allowed: 1)"),
    "fp16": (lambda a: bool(a.fp16), "mixed-precision autocast is refused: the loss difference of the two "
             "perturbed passes (about eps·c) drowns in half-precision round-off; load the model in float32 "
             "(allowed: False)"),
    "bf16": (lambda a: bool(a.bf16), "mixed-precision autocast is refused: the loss difference of the two "
             "perturbed passes (about eps·c) drowns in half-precision round-off; load the model in float32 "
             "(allowed: False)"),
    CHECKPOINTING: (lambda a: bool(getattr(a, CHECKPOINTING)),
                    "there is no backward pass, so nothing to recompute (allowed: False)"),
    "neftune_noise_alpha": (lambda a: a.neftune_noise_alpha is not None,
                            "NEFTune adds fresh noise to the embeddings on every forward pass, so the two "
                            "perturbed passes of a step would not see the same function (allowed: None)"),
    "deepspeed": (lambda a: bool(a.deepspeed), "DeepSpeed owns the optimizer step and expects gradients "
                  "(allowed: None)"),
    "fsdp": (lambda a: bool(a.fsdp), "FSDP shards gradients and optimizer state for a backward pass; not "
             "supported with zeroth-order optimizers here (allowed: '' or [])"),
}


def check_arguments(args: TrainingArguments) -> None:
    """``ValueError`` naming every refused argument that is set, its value and why."""
    bad = [f"{name}={getattr(args, name)!r}: {why}" for name, (test, why) in REFUSED.items() if test(args)]
    if bad:
        raise ValueError("ZOTrainer trains without a backward pass, so these TrainingArguments are refused: "
                         + "; ".join(bad))


class TakenStep(torch.optim.Optimizer):
    """What ``Trainer`` holds as its optimizer: the zeroth-order optimizer's param groups, state and
    state dict, and a ``step()`` that only checks that ``ZOTrainer.training_step`` took this step (a
    zeroth-order step needs the batch's closure, which only ``training_step`` has). Delegation as in
    accelerate's ``AcceleratedOptimizer`` (no ``Optimizer.__init__``: nothing of its own to hold)."""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:  # noqa: D107 - no super().__init__ on purpose
        self.optimizer = optimizer
        self.pending = False

    @property
    def state(self):
        return self.optimizer.state

    @property
    def param_groups(self):
        return self.optimizer.param_groups

    @param_groups.setter
    def param_groups(self, groups):
        self.optimizer.param_groups = groups

    @property
    def defaults(self):
        return self.optimizer.defaults

    def state_dict(self) -> dict[str, Any]:
        return self.optimizer.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state_dict)

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def step(self, closure: Callable[[], Any] | None = None) -> None:  # type: ignore[override]
        if closure is not None:
            raise ValueError("ZOTrainer takes the zeroth-order step in training_step; step() takes no closure")
        if not self.pending:
            raise RuntimeError("optimizer.step() without a zeroth-order step: ZOTrainer.training_step takes it")
        self.pending = False


class PromptDataset(torch.utils.data.Dataset):
    """The examples of an encoded ``llm_demo`` task split (``tasks.encode``); item i is the index i, and
    ``collate`` makes the batch ``tasks.subset(batch, indices)``, exactly as ``llm_demo.finetune`` does."""

    def __init__(self, batch: Batch) -> None:
        self.batch = batch

    def __len__(self) -> int:
        return int(self.batch["labels"].numel())

    def __getitem__(self, i: int) -> int:
        return int(i)

    def collate(self, indices: list[int]) -> Batch:
        return subset(self.batch, indices)


def prompt_datasets(data: str | Path, tokenizer: Any, max_length: int = 128,
                    eval_examples: int = 0) -> tuple[PromptDataset, PromptDataset]:
    """The train split and the evaluation split (dev, else test) of a task, as ``llm_demo.finetune`` reads them."""
    task = load_task(data)
    evals = task.splits[task.eval_split]
    if eval_examples:
        evals = evals[:eval_examples]
    return (PromptDataset(encode(task, tokenizer, task.splits["train"], max_length)),
            PromptDataset(encode(task, tokenizer, evals, max_length)))


class LoopOrderSampler(torch.utils.data.Sampler):
    """A batch sampler in ``llm_demo.finetune``'s order: step t's examples are
    ``batch_indices(seed, t, n, batch_size)``, a pure function of (seed, t). With several processes each
    takes its own slice of the global batch (``rank::world_size``); ``ZOTrainer`` samples the global batch and
    slices it after collating instead, to keep its padding width."""

    def __init__(self, seed: int, n: int, batch_size: int, steps: int, rank: int = 0, world_size: int = 1) -> None:
        self.seed, self.n, self.batch_size, self.steps = seed, n, batch_size, steps
        self.rank, self.world_size = rank, world_size

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.steps):
            yield batch_indices(self.seed, step, self.n, self.batch_size)[self.rank::self.world_size].tolist()


def _distributed() -> tuple[int, int]:
    """(rank, world size); (0, 1) outside torchrun."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class ZOTrainer(Trainer):
    """``transformers.Trainer`` with a zeroth-order optimizer of the registry (see the module docstring).

    ``zo_optimizer``: a registry name ("mezo", "adamezo", "hizoo", ...); ``zo_hyper``: its other
    hyperparameters (lr, weight decay and seed come from the ``TrainingArguments``).
    """

    def __init__(self, model: Any = None, args: TrainingArguments | None = None, *, zo_optimizer: str = "mezo",
                 zo_hyper: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        entry = get_entry(zo_optimizer)
        if not entry.zeroth_order:
            raise ValueError(f"zo_optimizer={zo_optimizer!r} is a first-order optimizer; ZOTrainer takes a "
                             "zeroth-order one (use transformers.Trainer itself for first-order training)")
        hyper = dict(zo_hyper or {})
        given = sorted({"lr", "weight_decay", "seed"} & set(hyper))
        if given:
            raise ValueError(f"zo_hyper sets {', '.join(given)}: give them as TrainingArguments (learning_rate, "
                             "weight_decay, seed), which the learning-rate schedule and the checkpoints read")
        unknown = sorted(set(hyper) - set(entry.specs))
        if unknown:
            raise ValueError(f"{entry.title} has no hyperparameter {', '.join(map(repr, unknown))}; allowed: "
                             f"{', '.join(sorted(set(entry.specs) - {'lr', 'weight_decay', 'seed'}))}")
        if "optimizers" in kwargs or "optimizer_cls_and_kwargs" in kwargs:
            raise ValueError("ZOTrainer builds its optimizer from zo_optimizer; do not pass optimizers= or "
                             "optimizer_cls_and_kwargs=")
        if args is not None:
            check_arguments(args)
        self.zo_name = zo_optimizer
        self.zo_hyper = hyper
        self.zo = None  # the zeroth-order optimizer, once created
        self.taken: TakenStep | None = None
        self.zo_log: list[dict[str, float]] = []  # one entry a step: step, train_loss, forward_passes, projected_grad
        super().__init__(model=model, args=args, **kwargs)
        check_arguments(self.args)  # the defaults Trainer made, when no args were given

    # ------------------------------------------------------------------ the optimizer
    def create_optimizer(self, model: Any = None) -> torch.optim.Optimizer:
        if self.optimizer is None:
            opt_model = self.model if model is None else model
            named = [(n, p) for n, p in opt_model.named_parameters() if p.requires_grad]
            if not named:
                raise ValueError("the model has no trainable parameters (requires_grad=True)")
            wd = self.args.weight_decay
            params = weight_decay_groups(named, wd) if wd else [p for _, p in named]
            kw: dict[str, Any] = {}
            if _distributed()[1] > 1:
                cls = get_entry(self.zo_name).cls
                if "process_group" not in inspect.signature(cls.__init__).parameters:
                    raise ValueError(f"{cls.__name__} has no process_group keyword in this version of the library, "
                                     "so under torchrun every process would take its own step; run one process")
                kw["process_group"] = torch.distributed.group.WORLD
            hyper = dict(self.zo_hyper)
            if "weight_decay" in get_entry(self.zo_name).specs:
                hyper["weight_decay"] = wd
            elif wd:
                raise ValueError(f"weight_decay={wd}: {get_entry(self.zo_name).title} has no weight decay (allowed: 0)")
            self.zo = make_optimizer(self.zo_name, params, lr=self.args.learning_rate, seed=self.args.seed,
                                     **hyper, **kw)
            self.taken = TakenStep(self.zo)  # Trainer wraps it (accelerate's AcceleratedOptimizer)
            self.optimizer = self.taken
        return self.optimizer

    # ------------------------------------------------------------------ the step
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if isinstance(inputs, dict) and "verbalizer_ids" in inputs:  # an llm_demo prompt-classification batch
            loss = loss_fn(model, inputs)
            return (loss, None) if return_outputs else loss
        return super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)

    def training_step(self, model, inputs, num_items_in_batch=None) -> torch.Tensor:
        """The whole zeroth-order step on this batch (no backward); returns (L+ + L−)/2."""
        model.eval()  # both perturbed passes must see the same function: no dropout
        inputs = self._prepare_inputs(inputs)

        def closure() -> torch.Tensor:
            with self.compute_loss_context_manager():
                return self.compute_loss(model, inputs)

        loss = self.zo.step(closure)
        self.taken.pending = True
        parts = self.zo.directions_of(self.zo.last_log_entry)
        c = sum(part[1] for part in parts) / len(parts)
        value = float(loss)
        if not math.isfinite(value):
            raise ValueError(f"step {self.state.global_step + 1}: the training loss is not finite; lower the "
                             "learning rate")
        self.zo_log.append({"step": self.state.global_step + 1, "train_loss": value,
                            "forward_passes": self.zo.forward_passes, "projected_grad": c})
        return torch.as_tensor(loss, dtype=torch.float32).detach().to(self.args.device)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        logs = {k: v for k, v in logs.items() if k != "grad_norm"}  # there is no gradient (Trainer logs 0)
        if self.zo is not None and self.zo_log:
            logs |= {"forward_passes": self.zo.forward_passes, "projected_grad": self.zo_log[-1]["projected_grad"]}
        super().log(logs, start_time)

    # ------------------------------------------------------------------ data and evaluation
    def get_train_dataloader(self) -> torch.utils.data.DataLoader:
        ds = self.train_dataset
        if not isinstance(ds, PromptDataset):
            return super().get_train_dataloader()
        if self.args.max_steps is None or self.args.max_steps <= 0:
            raise ValueError("with a PromptDataset, set TrainingArguments(max_steps=N): its batches follow "
                             "llm_demo.finetune's order, one batch a step")
        rank, world = _distributed()
        # Every process collates the whole global batch and keeps its contiguous rows at the global batch's
        # padding width (as llm_demo.distributed.local_slice): each example is then computed as in one process
        # (a narrower padding changes the matmuls' rounding, which c = (L+ - L-)/(2 eps) magnifies).
        sampler = LoopOrderSampler(self.args.seed, len(ds), self.args.per_device_train_batch_size * world,
                                   self.args.max_steps)

        def collate(rows):
            return distributed.rows_of(ds.collate(rows), rank, world)

        return torch.utils.data.DataLoader(ds, batch_sampler=sampler, collate_fn=collate)

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        ds = self.eval_dataset if eval_dataset is None else eval_dataset
        if not isinstance(ds, PromptDataset):
            return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        was_training = self.model.training
        self.model.eval()
        eval_loss, eval_acc = evaluate(self.model, ds.batch)
        self.model.train(was_training)
        metrics = {f"{metric_key_prefix}_loss": eval_loss, f"{metric_key_prefix}_accuracy": eval_acc}
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics


def from_run_config(config: Any, output_dir: str | Path, **training_arguments: Any) -> ZOTrainer:
    """A ``ZOTrainer`` for an ``llm_demo.finetune.RunConfig``: the same model (LoRA included), data, batch
    order, optimizer and hyperparameters, learning-rate schedule and seed as ``llm_demo.finetune``'s own
    loop; ``training_arguments`` override the ``TrainingArguments`` made from it (logging, saving, ...).
    """
    from . import adapters
    from .finetune import check_device
    from .tasks import load_model

    config.validate()
    if config.dtype != "float32":
        raise ValueError(f"dtype={config.dtype!r}: ZOTrainer is tested in float32 only (allowed: 'float32')")
    device = check_device(config.device)
    # Under torchrun (Trainer sets the process group up from these variables) config.batch_size is the
    # global batch, as in llm_demo.finetune: each process takes its share.
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if config.batch_size % world:
        raise ValueError(f"batch size {config.batch_size} does not split over {world} processes; allowed: a "
                         f"multiple of {world}")
    if world > 1 and device.type == "cuda":  # Trainer puts each process on cuda:LOCAL_RANK
        distributed.check_cuda_processes(device, world)
    torch.manual_seed(config.seed)  # as llm_demo.finetune: the LoRA adapters' initial A
    model, tokenizer = load_model(config.model, device)
    if config.threads:
        torch.set_num_threads(config.threads)
    elif device.type == "cpu" and sum(p.numel() for p in model.parameters()) < 20_000_000:
        torch.set_num_threads(1)  # as llm_demo.finetune
    lora = config.lora()
    if lora is not None:
        model = adapters.apply_lora(model, lora)
    train, dev = prompt_datasets(config.data, tokenizer, config.max_length, config.eval_examples)
    hyper = config.optimizer_hyper()
    lr = hyper.pop("lr", get_entry(config.optimizer).specs["lr"].default)
    wd = hyper.pop("weight_decay", 0.0)
    hyper.pop("seed", None)
    args = dict(output_dir=str(output_dir), max_steps=config.steps, learning_rate=lr, weight_decay=wd,
                per_device_train_batch_size=config.batch_size // world, seed=config.seed,
                lr_scheduler_type=config.lr_scheduler_type, warmup_steps=config.warmup_steps,
                eval_strategy="steps", eval_steps=config.eval_every, logging_steps=config.eval_every,
                save_strategy="no", report_to=[], use_cpu=device.type == "cpu", disable_tqdm=True)
    return ZOTrainer(model, TrainingArguments(**(args | training_arguments)), train_dataset=train,
                     eval_dataset=dev, zo_optimizer=config.optimizer, zo_hyper=hyper)
