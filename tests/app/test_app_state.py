"""URL state: every field parses, validates and round-trips; bad values explain themselves."""

from __future__ import annotations

import pytest

from app import controls, state
from app.presets import DEMO_HYPER
from optimizers import OPTIMIZERS


def test_playground_defaults_round_trip_through_the_url():
    fields = controls.playground_fields()
    defaults = controls.defaults(fields)
    text = state.dump_params(fields, defaults)
    assert text["opts"] == "adam,mezo,adamezo" and text["budget"] == "none" and text["x0"] == "none"
    assert text["adamezo.beta1"] == "0.7" and float(text["adamezo.lr"]) == DEMO_HYPER["adamezo"]["lr"]
    values, errors = state.parse_params(fields, text)
    assert errors == []
    assert values == defaults


def test_bad_values_fall_back_with_a_sentence():
    fields = controls.playground_fields()
    values, errors = state.parse_params(fields, {
        "steps": "abc", "repeats": "0", "opts": "mezo,sgd", "adamezo.beta1": "1.5", "adamezo.warmup": "maybe",
        "adamezo.horizon": "2.5", "x0": "nan", "fair": "yes", "seed": "7",
    })
    assert values == {"seed": 7}
    text = "\n".join(errors)
    assert len(errors) == 8
    assert "steps='abc' is not an integer" in text and "Using steps=1000 instead" in text
    assert "repeats='0' is out of range; allowed: an integer from 1 to 20" in text
    assert "unknown value 'sgd'" in text
    assert "invalid beta1=1.5 (too large); allowed: a number >= 0 and < 1" in text
    assert "warmup" in text and "'partial', 'mezo'" in text
    assert "horizon" in text and "not an integer" in text
    assert "x0='nan'" in text
    assert "fair='yes' is not a known option; allowed: off, path, budget" in text


def test_spec_fields_use_the_registry_validation():
    spec = OPTIMIZERS["adamezo"].specs["lr"]
    f = state.spec_field("adamezo.lr", spec, "AdaMeZO")
    assert f.read("0.01") == 0.01
    with pytest.raises(ValueError, match=r"adamezo.lr: AdaMeZO: invalid lr=-1.0 \(too small\); allowed: a number > 0"):
        f.read("-1")
    budget = state.int_field("budget", None, 1, 10, optional=True)
    assert budget.read("none") is None and budget.read("4") == 4
    assert state.fmt_number(1e-08) == "1e-08" and state.fmt_number(3.0) == "3"


def test_sweep_values_are_validated_per_optimizer():
    assert controls.parse_sweep_values("0, 0.5, 0.9, 0.5", "adamezo", "beta1") == [0.0, 0.5, 0.9]
    assert controls.parse_sweep_values("1, 2, none", "mezo", "seed_budget") == [1, 2, None]
    assert controls.parse_sweep_values("partial, mezo", "adamezo", "warmup") == ["partial", "mezo"]
    with pytest.raises(ValueError, match="beta1=1.0 \\(too large\\)"):
        controls.parse_sweep_values("0.5, 1", "adamezo", "beta1")
    with pytest.raises(ValueError, match="MeZO has no hyperparameter 'horizon'"):
        controls.parse_sweep_values("1, 2", "mezo", "horizon")
    with pytest.raises(ValueError, match="at most 8"):
        controls.parse_sweep_values(",".join(str(i) for i in range(1, 10)), "mezo", "seed_budget")
    assert controls.sweepable("adam") == ["betas", "beta1", "beta2", "lr", "delta", "weight_decay"]
    assert controls.sweepable(["mezo", "adamezo"]) == ["lr", "eps", "weight_decay", "distribution", "num_directions",
                                                      "seed_budget"]
    assert controls.sweepable(["adamezo", "adam"]) == ["betas", "beta1", "beta2", "lr", "delta", "weight_decay"]
    assert controls.parse_sweep_values("0.7/0.9, 0/0", ["adamezo", "zo-adam"], "betas") == [(0.7, 0.9), (0.0, 0.0)]
    assert controls.value_hyper("betas", (0.7, 0.0)) == {"beta1": 0.7, "beta2": 0.0}
    assert controls.value_hyper("seed_budget", 4) == {} and controls.fmt((0.7, 0.0)) == "0.7/0"
    assert controls.parse_lrs(" ", ["adamezo"], "betas", 3) is None


def test_controls_are_generated_from_specs():
    kinds = {k: controls.control_kind(s) for k, s in state.optimizer_specs("adamezo").items()}
    assert kinds["lr"] == "log" and kinds["eps"] == "log" and kinds["warmup"] == "select"
    assert kinds["beta1"] == "slider" and kinds["horizon"] == "slider"
    assert "seed" not in kinds and "chunk_size" not in kinds
    opts = controls.spec_options(OPTIMIZERS["adamezo"].specs["lr"], 0.0123)
    assert opts[0] == 1e-6 and opts[-1] == 1.0 and 0.0123 in opts
    assert controls.nice_values(0.01, 0.1) == [0.01, 0.02, 0.05, 0.1]
