"""Run under torchrun by ``test_trainer.py``: ZOTrainer through Trainer's own distributed setup.

    python -m torch.distributed.run --standalone --nproc-per-node 2 tests/llm_demo/trainer_dist_worker.py \
        MODEL TASK OPTIMIZER OUT

Rank 0 writes ``OUT/result.json``: the trainer's per-step log and the final weights (flattened).
"""

import json
import os
import sys
from pathlib import Path

import torch

from llm_demo import trainer as T
from llm_demo.finetune import RunConfig

model, task, optimizer, out = sys.argv[1:5]
cfg = RunConfig(optimizer=optimizer, steps=4, eval_every=2, batch_size=8, model=model, data=task, device="cpu")
zt = T.from_run_config(cfg, Path(out) / "hf", logging_steps=1)
zt.train()
rank, world = T._distributed()
if rank == 0:
    weights = torch.cat([p.detach().reshape(-1).double() for p in zt.model.parameters()]).tolist()
    Path(out, "result.json").write_text(json.dumps({"world": world, "log": zt.zo_log, "weights": weights}))
if torch.distributed.is_initialized():  # every process leaves the group together (gloo aborts otherwise)
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
sys.stdout.flush()
sys.stderr.flush()
os._exit(0)  # not the interpreter's teardown, where gloo's threads sometimes still abort (see dist_worker.py)
