"""The command line trains the bundled tiny OPT in float16 (issue 12, item 2): AdaMeZO and first-order
Adam used to turn every weight into NaN by step 2 (δ = 1e-8 and torch's eps = 1e-8 are 0 in float16)."""

import json
import math
import warnings

import pytest
import torch

from llm_demo.finetune import main
from llm_demo.tasks import BUNDLED_MODEL, load_model


@pytest.mark.parametrize("optimizer", ["adamezo", "adam"])
def test_the_cli_trains_in_float16(optimizer, tmp_path, capsys):
    out = tmp_path / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the CLI's own note on half-precision round-off
        code = main(["--optimizer", optimizer, "--dtype", "float16", "--steps", "3", "--eval-every", "3",
                     "--eval-examples", "16", "--batch-size", "4", "--out", str(out), "--quiet"])
    assert code == 0, capsys.readouterr().err
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [0, 1, 2, 3]
    assert all(math.isfinite(r["train_loss"]) for r in records)
    assert math.isfinite(records[-1]["eval_loss"]) and math.isfinite(records[-1]["test_loss"])
    if optimizer == "adam":  # m and v in float32: 8 bytes per weight, plus a 4-byte step counter per tensor
        model, _ = load_model(BUNDLED_MODEL, "cpu", torch.float16)
        params = list(model.parameters())
        assert records[-1]["optimizer_state_bytes"] == 8 * sum(p.numel() for p in params) + 4 * len(params)
    else:
        assert records[-1]["optimizer_state_bytes"] == 16 * 3
