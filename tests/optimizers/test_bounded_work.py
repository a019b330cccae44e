"""Large values are accepted from code, but what the library allocates stays bounded (issue 12, item 1,
library half): ``workers=10**9`` used to build 10**9 samplers (2.7 GB) before the first step."""

import os
import tracemalloc

import pytest
import torch

from optimizers import OPTIMIZERS, AdaMeZO, make_optimizer, state_bytes

ZO = [n for n in OPTIMIZERS if OPTIMIZERS[n].zeroth_order]


def model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)).double()


X = torch.randn(32, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def traced(build):
    """``build()`` and the peak of Python allocations while it ran (lazy imports done beforehand)."""
    build()
    tracemalloc.start()
    try:
        out = build()
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def flat(m):
    return torch.cat([p.detach().reshape(-1) for p in m.parameters()])


@pytest.mark.parametrize("cores", [1, 2, 64])
@pytest.mark.parametrize("name", ZO)
def test_huge_workers_is_capped_by_the_blocks_and_the_cores(name, cores, monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    small, huge = model(), model()
    opt, allocated = traced(lambda: make_optimizer(name, huge.parameters(), lr=1e-2, chunk_size=5, workers=10**6))
    blocks = len(opt._blocks)
    assert blocks == 7 + 2 + 2 + 1  # 32, 8, 8 and 1 elements in blocks of at most 5
    assert len(opt._samplers) == len(opt._parts) <= min(blocks, cores)  # runs of blocks of about equal size
    assert len(opt._parts) == {1: 1, 2: 2, 64: 9}[cores]
    assert (opt._pool is None) == (cores == 1) and (opt._pool is None or opt._pool._max_workers == len(opt._parts))
    assert opt.workers == 10**6  # the value asked for is kept (and reported); only the threads are capped
    assert allocated < 1_000_000
    ref = make_optimizer(name, small.parameters(), lr=1e-2, chunk_size=5, workers=1)
    for _ in range(5):
        opt.step(lambda: huge(X).pow(2).mean())
        ref.step(lambda: small(X).pow(2).mean())
    assert torch.equal(flat(huge), flat(small))
    buffers = {b.untyped_storage().data_ptr(): b.untyped_storage().nbytes() for b in opt._buffers.values()}
    assert sum(buffers.values()) <= 3 * 5 * 8 * min(blocks, cores)  # z, m, v: one block each per worker


def test_an_astronomical_workers_costs_nothing(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 10**6)
    opt, allocated = traced(lambda: make_optimizer("adamezo", model().parameters(), workers=10**18))
    assert len(opt._samplers) <= 4 and allocated < 1_000_000  # at most one per block: 4 tensors, 4 blocks


def test_a_huge_horizon_is_data_not_memory():
    """K = 10**12 keeps the pairs there are: the same steps as K = 100 over 30 steps, 16 bytes a pair."""
    runs = []
    for horizon in (100, 10**12):
        m = model()
        tracemalloc.start()
        opt = AdaMeZO(m.parameters(), lr=1e-2, horizon=horizon, seed=4)
        for _ in range(30):
            opt.step(lambda: m(X).pow(2).mean())
        allocated = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert allocated < 2_000_000 and len(opt.history) == 30
        runs.append((flat(m), opt.history, state_bytes(opt)))
    assert torch.equal(runs[0][0], runs[1][0]) and runs[0][1] == runs[1][1] and runs[1][2] == 16 * 30


def test_a_huge_chunk_size_allocates_the_largest_tensor_not_the_chunk():
    m = model()
    opt = make_optimizer("adamezo", m.parameters(), chunk_size=2**62)
    opt.step(lambda: m(X).pow(2).mean())
    buffers = {b.untyped_storage().data_ptr(): b.untyped_storage().nbytes() for b in opt._buffers.values()}
    assert sum(buffers.values()) == 3 * 32 * 8  # z, m and v as large as the largest tensor (4 × 8, float64)


def test_a_huge_seed_budget_draws_without_building_the_pool():
    m = model()
    opt = make_optimizer("mezo", m.parameters(), seed_budget=10**18, seed=3)
    tracemalloc.start()
    for _ in range(5):
        opt.step(lambda: m(X).pow(2).mean())
    allocated = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert allocated < 1_000_000 and len({opt.seed_for_step(t) for t in range(100)}) == 100
