"""Does FSDP2 (``torch.distributed.fsdp.fully_shard``) run on the CPU with gloo here, and can a ZO optimizer
perturb a rank's shard in place? (The README's "Sharded models (FSDP2)" records the answer.)

    torchrun --standalone --nproc-per-node 2 benchmarks/fsdp2_probe.py

Prints, per rank: the parameters' type and placements, the local and global shapes, the output of a
no-grad forward, the output after adding 0.01 to every local shard in place, and the shard's global offset.
"""
import torch, torch.distributed as dist
from torch.distributed.fsdp import fully_shard
dist.init_process_group("gloo")
rank = dist.get_rank()
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))
ref = [p.detach().clone() for p in model.parameters()]
try:
    for layer in model:
        if isinstance(layer, torch.nn.Linear):
            fully_shard(layer)
    fully_shard(model)
    p0 = next(model.parameters())
    print(rank, "param type", type(p0).__name__, "placements", getattr(p0, "placements", None),
          "local shape", tuple(p0.to_local().shape), "global", tuple(p0.shape), flush=True)
    x = torch.randn(4, 6)
    with torch.no_grad():
        out = model(x)
    print(rank, "forward ok", out.shape, float(out.sum()), flush=True)
    # in-place perturbation of the local shard, then forward again
    with torch.no_grad():
        for p in model.parameters():
            p.to_local().add_(0.01)
        out2 = model(x)
    print(rank, "perturbed forward ok", float(out2.sum()), flush=True)
    from torch.distributed.tensor._utils import compute_local_shape_and_global_offset
    print(rank, "offset", compute_local_shape_and_global_offset(p0.shape, p0.device_mesh, p0.placements), flush=True)
except Exception as e:
    import traceback; traceback.print_exc()
    print(rank, "FAILED", type(e).__name__, str(e)[:500], flush=True)
dist.destroy_process_group()
