"""Data parallel through ``process_group=``: two gloo processes on slices of a batch equal one process on
the whole batch; the ranks must agree on their settings; a non-finite loss on one rank fails every rank."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from optimizers import MeZO, make_optimizer

WORKER = Path(__file__).with_name("dist_worker.py")
sys.path.insert(0, str(WORKER.parent))

import dist_worker  # noqa: E402

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")


def run_ranks(scenario: str, tmp_path: Path, world: int = 2) -> list[dict]:
    """Start ``world`` worker processes on ``scenario`` and return what each wrote."""
    store = tmp_path / "store"
    outs = [tmp_path / f"rank{r}.json" for r in range(world)]
    procs = [subprocess.Popen([sys.executable, str(WORKER), scenario, str(r), str(world), str(store), str(outs[r])],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for r in range(world)]
    logs = [p.communicate(timeout=240)[0].decode(errors="replace") for p in procs]
    for p, log in zip(procs, logs):
        assert p.returncode == 0, log[-3000:]
    return [json.loads(o.read_text()) for o in outs]


def test_two_processes_equal_one_process_on_the_whole_batch(tmp_path):
    ranks = run_ranks("equal", tmp_path)
    for name in ("mezo", "adamezo", "hizoo", "zo-adam"):
        single = dist_worker.train(name, 0, 1, None)
        for r in ranks:
            assert r[name]["forward_passes"] == single["forward_passes"]
            torch.testing.assert_close(torch.tensor(r[name]["losses"]), torch.tensor(single["losses"]),
                                       rtol=1e-12, atol=0)
            torch.testing.assert_close(torch.tensor(r[name]["weights"]), torch.tensor(single["weights"]),
                                       rtol=1e-12, atol=1e-15)
        # the replicas are equal bit for bit, and they moved
        assert ranks[0][name]["weights"] == ranks[1][name]["weights"]
        model, _, _ = dist_worker.problem()
        start = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
        assert (torch.tensor(single["weights"]) - start).abs().max() > 1e-4


def test_ranks_with_different_seeds_are_refused_by_name(tmp_path):
    ranks = run_ranks("seeds", tmp_path)
    for r in ranks:
        assert r["error"] is not None
        assert "rank 1 differs from rank 0" in r["error"]
        assert "seed=1 (rank 0: 0)" in r["error"]


def test_a_non_finite_loss_on_one_rank_fails_the_step_on_every_rank(tmp_path):
    ranks = run_ranks("nonfinite", tmp_path)
    for rank, r in enumerate(ranks):
        assert r["error"] is not None and "averaged over the 2 processes" in r["error"], r
        assert f"rank {rank}, had" in r["error"]
        assert r["steps"] == 1  # the failed step did not count
        assert r["max_change"] < 1e-12  # the parameters were moved back
    assert ranks[0]["weights"] == ranks[1]["weights"]  # and the replicas stay equal


def test_communication_is_one_all_reduce_of_two_float64_per_step(tmp_path):
    ranks = run_ranks("count", tmp_path)
    steps = dist_worker.STEPS
    for r in ranks:
        assert r["mezo"] == [[2, 8]] * steps  # L+ and L− together: 16 bytes a step
        assert r["adamezo"] == [[2, 8]] * steps
        assert r["hizoo"] == [[1, 8], [2, 8]] * steps  # L(θ), then L+ and L−: 24 bytes a step


def test_process_group_without_distributed_or_for_adam_is_refused():
    p = torch.nn.Parameter(torch.zeros(3))
    if not dist.is_initialized():
        with pytest.raises(ValueError, match="torch.distributed is not initialized"):
            MeZO([p], process_group=object())
    with pytest.raises(ValueError, match="DistributedDataParallel"):
        make_optimizer("adam", [p], process_group=object())

