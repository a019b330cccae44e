"""Fixtures for the LLM demo tests: a tiny random OPT with its own tokenizer, and a small task."""

import json
import shutil
from pathlib import Path

import pytest

from llm_demo.tasks import BUNDLED_TASK


# The figures of the process rather than of the training: its peak resident set, the wall time, and on
# CUDA the peak allocated bytes during the measured step (every tensor the process holds counts, e.g. a
# second run's model in a test's process). Resumed and uninterrupted runs are compared without them.
VOLATILE = ("wall_time_s", "peak_memory_bytes")
VOLATILE_MEMORY = ("cuda_peak_allocated",)


def comparable_records(records) -> list[dict]:
    """Metrics records without the process's figures (``VOLATILE``, ``memory.VOLATILE_MEMORY``)."""
    return [{k: ({m: b for m, b in v.items() if m not in VOLATILE_MEMORY} if k == "memory" else v)
             for k, v in r.items() if k not in VOLATILE} for r in records]


@pytest.fixture
def comparable():
    return comparable_records


@pytest.fixture(scope="session")
def tiny_task(tmp_path_factory) -> Path:
    """64 train, 24 dev and 24 test examples of the bundled task, with its template and verbalizers."""
    out = tmp_path_factory.mktemp("task")
    for split, n in (("train", 64), ("dev", 24), ("test", 24)):
        lines = (Path(BUNDLED_TASK) / f"{split}.jsonl").read_text().splitlines()
        pos = [x for x in lines if json.loads(x)["label"] == 1][: n // 2]
        neg = [x for x in lines if json.loads(x)["label"] == 0][: n // 2]
        (out / f"{split}.jsonl").write_text("\n".join(p for pair in zip(pos, neg) for p in pair) + "\n")
    shutil.copy(Path(BUNDLED_TASK) / "task.json", out / "task.json")
    return out


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, tiny_task) -> Path:
    """A random 2-layer OPT (hidden 16) and a BPE tokenizer trained here: any local HF model folder."""
    import torch

    from llm_demo.pretrain import make_config, train_tokenizer

    texts = [json.loads(x)["text"] + " It was good. It was bad."
             for x in (Path(BUNDLED_TASK) / "train.jsonl").read_text().splitlines()]
    tokenizer = train_tokenizer(texts, vocab_size=400)
    torch.manual_seed(0)
    from transformers import OPTForCausalLM

    model = OPTForCausalLM(make_config(len(tokenizer), hidden=16, layers=2, ffn=32, heads=2, max_positions=128))
    out = tmp_path_factory.mktemp("tiny-opt")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
