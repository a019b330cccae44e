"""MeZO: memory-efficient zeroth-order SGD.

Malladi et al., "Fine-Tuning Language Models with Just Forward Passes", NeurIPS 2023.

    c_t = [L(θ_t + ε z_t) − L(θ_t − ε z_t)] / (2ε)
    θ_{t+1} = θ_t − η (c_t z_t + λ θ_t)

State: the current seed and c_t only (``history`` holds that one pair; q pairs with ``num_directions=q``,
whose averaged estimate ĝ = (1/q) Σ_j c_j z_j replaces c_t z_t).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from .base import ZerothOrderOptimizer


class MeZO(ZerothOrderOptimizer):
    """Zeroth-order SGD with in-place perturbations and regenerated directions (2 forward passes a step)."""

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict],
        lr: float = 1e-3,
        eps: float = 1e-3,
        weight_decay: float = 0.0,
        seed: int = 0,
        seed_budget: int | None = None,
        chunk_size: int = 2**20,
        distribution: str = "gaussian",
        workers: int | None = None,
        num_directions: int = 1,
        process_group: torch.distributed.ProcessGroup | None = None,
    ) -> None:
        super().__init__(params, lr, eps, weight_decay, seed, seed_budget, chunk_size, distribution, workers,
                         num_directions, process_group=process_group)

    def _apply(self, entry: tuple) -> None:
        pairs = self.directions_of(entry)
        self._history = [pair[:2] for pair in pairs]
        self._sgd_update(pairs)
