"""Parameter-efficient fine-tuning through the ``peft`` library: LoRA adapters for any optimizer.

    model, tok = load_model(BUNDLED_MODEL)
    lora = LoRA(r=8, alpha=16, target_modules=("q_proj", "v_proj")).validate(model)
    peft_model = apply_lora(model, lora)       # the base weights frozen, only the adapters trainable
    opt = make_optimizer("mezo", [p for p in model.parameters() if p.requires_grad], lr=1e-3)
    opt.step(lambda: loss_fn(model, batch))    # model: the same module, now with LoRA layers inside
    adapter = adapter_state(peft_model)        # {name: tensor} of the adapter alone (peft's naming)

LoRA (Hu et al. 2021) replaces a linear layer's ``W x`` by ``W x + (alpha / r) · B A x`` with ``A``
[r × in] and ``B`` [out × r]; ``W`` stays frozen and ``B`` starts at zero, so the model is unchanged at
step 0. MeZO's paper (Malladi et al. 2023, Table 4) fine-tunes OPT with ZO + LoRA the same way (r = 8,
alpha = 16 on the attention's q and v projections, our defaults).

Everything here is peft's: ``LoraConfig`` and ``get_peft_model`` build the adapters (A drawn from
torch's global generator, which the training loop seeds), ``get_peft_model_state_dict`` and
``set_peft_model_state_dict`` save and load them. What this module adds is validation with messages
that name the allowed values (peft raises on an unknown target module only after it searched the
model, with a message that does not list the candidates) and zero dropout, which zeroth-order methods
need: both perturbed forward passes of a step must see the same function.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import torch

PEFT_METHODS = ("none", "lora")
"""``--peft`` values: full fine-tuning, or LoRA adapters."""
LORA_DEFAULTS: dict[str, Any] = {"lora_r": 8, "lora_alpha": 16, "lora_target_modules": "q_proj,v_proj"}
"""The LoRA settings' defaults (MeZO's LoRA setting for OPT)."""
LORA_R_MAX = 1024
LORA_ALPHA_MAX = 4096


def linear_module_names(model: torch.nn.Module) -> list[str]:
    """The names LoRA can target in ``model``: the last component of every ``torch.nn.Linear`` module's
    name (``q_proj``, ``fc1``, ...), sorted; the output projection (``lm_head``, tied to the input
    embedding in OPT) is left out."""
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return sorted({name.rsplit(".", 1)[-1] for name, m in model.named_modules()
                   if isinstance(m, torch.nn.Linear) and m is not output and name})


def parse_target_modules(text: str) -> tuple[str, ...]:
    """``"q_proj,v_proj"`` -> ``("q_proj", "v_proj")``; ``ValueError`` for an empty or malformed list."""
    if not isinstance(text, str):
        raise ValueError(f"invalid lora_target_modules={text!r:.100}; allowed: a comma-separated list of module "
                         "names, e.g. 'q_proj,v_proj'")
    names = tuple(n.strip() for n in text.split(","))
    if not names or any(not n or not n.replace("_", "").isalnum() for n in names) or len(set(names)) != len(names):
        raise ValueError(f"invalid lora_target_modules={text!r:.100}; allowed: a comma-separated list of distinct "
                         "module names (letters, digits, '_'), e.g. 'q_proj,v_proj'")
    return names


@dataclass(frozen=True)
class LoRA:
    """The LoRA settings of a run: rank ``r``, ``alpha`` (the adapter's output is scaled by alpha / r) and
    the linear modules to adapt, by the last component of their name."""

    r: int = LORA_DEFAULTS["lora_r"]
    alpha: int = LORA_DEFAULTS["lora_alpha"]
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")

    @classmethod
    def from_settings(cls, lora_r: Any, lora_alpha: Any, lora_target_modules: Any) -> LoRA:
        """From the run settings (``lora_target_modules`` comma-separated); ``ValueError`` naming the
        setting and the allowed values when one is out of range."""
        for name, value, high in (("lora_r", lora_r, LORA_R_MAX), ("lora_alpha", lora_alpha, LORA_ALPHA_MAX)):
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
                raise ValueError(f"invalid {name}={value!r:.100}; allowed: an integer from 1 to {high}")
        return cls(lora_r, lora_alpha, parse_target_modules(lora_target_modules))

    def validate(self, model: torch.nn.Module) -> LoRA:
        """``ValueError`` if a target module is not a linear module of ``model`` (listing the ones it has)."""
        known = linear_module_names(model)
        unknown = [n for n in self.target_modules if n not in known]
        if unknown:
            raise ValueError(f"--lora-target-modules: {', '.join(map(repr, unknown))} is not a linear module of "
                             f"this model; allowed: {', '.join(known)} (comma-separated)")
        return self


def apply_lora(model: torch.nn.Module, lora: LoRA) -> Any:
    """Add LoRA adapters to ``model`` in place with peft and freeze everything else; returns the
    ``PeftModel`` (for saving and loading the adapter). ``model`` itself keeps working as before (its
    ``forward`` now runs the adapted layers), and only the adapters have ``requires_grad=True``."""
    from peft import LoraConfig, get_peft_model

    lora.validate(model)
    config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, target_modules=list(lora.target_modules),
                        lora_dropout=0.0, bias="none", task_type="CAUSAL_LM")
    with warnings.catch_warnings():  # peft 0.21 asks transformers 5 a deprecated question (is_gradient_checkpointing)
        warnings.simplefilter("ignore", FutureWarning)
        peft_model = get_peft_model(model, config)
    peft_model.eval()
    return peft_model


def adapter_state(peft_model: Any) -> dict[str, torch.Tensor]:
    """The adapter's weights (peft's ``get_peft_model_state_dict``), detached CPU copies."""
    from peft import get_peft_model_state_dict

    return {k: v.detach().cpu().clone() for k, v in get_peft_model_state_dict(peft_model).items()}


def load_adapter_state(peft_model: Any, state: dict[str, torch.Tensor]) -> None:
    """Load an ``adapter_state`` into ``peft_model`` (peft's ``set_peft_model_state_dict``); ``ValueError``
    if its tensors are not exactly this adapter's (names and shapes)."""
    from peft import set_peft_model_state_dict

    mine = adapter_state(peft_model)
    if set(state) != set(mine):
        missing, extra = sorted(set(mine) - set(state)), sorted(set(state) - set(mine))
        raise ValueError(f"the saved adapter does not fit this model's LoRA adapter (missing: {missing[:3]}, "
                         f"unexpected: {extra[:3]})")
    wrong = [k for k in mine if tuple(state[k].shape) != tuple(mine[k].shape)]
    if wrong:
        raise ValueError(f"the saved adapter's {wrong[0]} is shaped {tuple(state[wrong[0]].shape)}, this model's "
                         f"{tuple(mine[wrong[0]].shape)}")
    set_peft_model_state_dict(peft_model, state)

