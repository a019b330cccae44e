"""Keyed random directions, generated block by block.

``direction(seed)`` is z ~ N(0, I) over all trainable parameters. Every parameter tensor is cut
(flattened, contiguous) into blocks of at most ``chunk_size`` elements, and block ``b`` of z is drawn
from a generator keyed by ``(seed, b)``. Any block of any past direction can therefore be regenerated
on its own, with one call of the same shape, dtype and device as when it was first drawn: this is the
"random state caching" of AdaMeZO (Cai et al., Section 3.3.1) with a counter-based key instead of a
cached stream position. Temporaries are bounded by the chunk, not by the largest tensor.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

_MASK64 = (1 << 64) - 1


def splitmix64(x: int) -> int:
    """One round of SplitMix64 (Steele et al. 2014): a bijective 64-bit integer mixer."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


@functools.lru_cache(maxsize=1 << 16)
def mix_key(*parts: int) -> int:
    """Hash integers into one 63-bit key (a valid ``torch.Generator.manual_seed`` argument)."""
    h = 0
    for part in parts:
        h = splitmix64(h ^ (int(part) & _MASK64))
    return h >> 1


@dataclass(frozen=True)
class Block:
    """Elements ``[start, stop)`` of the flattened parameter number ``param`` (in the optimizer's order)."""

    param: int
    start: int
    stop: int

    @property
    def numel(self) -> int:
        return self.stop - self.start


def make_blocks(params: list[torch.Tensor], chunk_size: int) -> list[Block]:
    """Cut every parameter into contiguous blocks of at most ``chunk_size`` elements."""
    blocks = []
    for i, p in enumerate(params):
        n = p.numel()
        for start in range(0, n, chunk_size):
            blocks.append(Block(i, start, min(start + chunk_size, n)))
    return blocks


class DirectionSampler:
    """Draws block ``b`` of direction ``seed`` from a generator keyed by ``(seed, b)``.

    One ``torch.Generator`` per device is reused and re-seeded for every block, so generating a
    block costs one ``manual_seed`` and one ``randn`` of the block's size. ``generated_elements``
    counts every element drawn, for cost reports.
    """

    def __init__(self, distribution: str = "gaussian") -> None:
        if distribution not in ("gaussian", "rademacher"):
            raise ValueError(f"invalid distribution={distribution!r}; allowed: 'gaussian', 'rademacher'")
        self.distribution = distribution
        self._generators: dict[torch.device, torch.Generator] = {}
        self.generated_elements = 0

    def _generator(self, device: torch.device) -> torch.Generator:
        g = self._generators.get(device)
        if g is None:
            g = self._generators[device] = torch.Generator(device=device)
        return g

    def block(self, seed: int, index: int, numel: int, dtype: torch.dtype, device: torch.device,
              out: torch.Tensor | None = None) -> torch.Tensor:
        """Block ``index`` of direction ``seed``: ``numel`` elements, written into ``out`` if given.

        Filling a reused buffer in place gives the same values as a fresh ``torch.randn`` and saves
        the allocation (and the page faults) of a new block-sized tensor on every call.
        """
        g = self._generator(device)
        g.manual_seed(mix_key(seed, index))
        self.generated_elements += numel
        z = torch.empty(numel, dtype=dtype, device=device) if out is None else out
        if self.distribution == "gaussian":
            return z.normal_(generator=g)
        return z.bernoulli_(0.5, generator=g).mul_(2).sub_(1)
