"""The LLM page's pure builders (app/llm_figures.py): smoothing, who is ahead, the figures' layout."""

from __future__ import annotations

import pytest

from app import llm_figures as LF


def run(label, losses, every=10, reference=False):
    records = []
    for s, loss in enumerate(losses):
        r = {"step": s, "forward_passes": 2 * s, "train_loss": 1.0, "wall_time_s": 0.1 * s}
        if s % every == 0:
            r |= {"eval_loss": loss, "eval_accuracy": 1 - loss}
        records.append(r)
    return {"label": label, "colour": "#000", "records": records, "reference": reference}


def test_ema_is_bias_corrected_and_skips_non_finite_values():
    assert LF.ema([1.0, 0.0, 0.0], 0.0) == [1.0, 0.0, 0.0]
    assert LF.ema([2.0, 2.0, 2.0], 0.9) == pytest.approx([2.0, 2.0, 2.0])  # no pull towards zero at the start
    assert LF.ema([1.0, 0.0], 0.5) == pytest.approx([1.0, 1 / 3])
    out = LF.ema([1.0, float("nan"), 0.0], 0.5)
    assert out[0] == 1.0 and out[1] != out[1] and out[2] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match=r"smoothing must be in \[0, 1\), got 1.0"):
        LF.ema([1.0], 1.0)


def test_leader_compares_at_the_passes_every_run_has_reached_and_ignores_the_reference():
    fast = run("A", [1.0] + [0.9] * 9 + [0.5] * 10 + [0.2] * 11)  # evaluations at steps 0, 10, 20, 30
    slow = run("B", [1.0] + [0.9] * 9 + [0.6] * 11)  # evaluations at 0, 10, 20: 40 passes at most
    adam = run("Adam", [0.01] * 31, reference=True)
    got = LF.leader([slow, fast, adam])
    assert got["passes"] == 40 and got["leader"] == "A" and got["ranking"] == ["A", "B"]
    assert (got["leader_loss"], got["runner_up_loss"], got["leader_passes_to_runner_up"]) == (0.2, 0.6, 20)
    assert LF.leader_text(got) == ("**A** leads **B** at 40 forward passes: dev loss 0.200 vs 0.600, dev accuracy "
                                   "80.0 % vs 40.0 % (+40.0 points). It reached B's dev loss in 0.50 × the passes.")
    tie = LF.leader([run("A", [1.0] * 10 + [0.500] * 11), run("B", [1.0] * 10 + [0.503] * 11)])
    assert LF.leader_text(tie).endswith("Under 1 % apart: a tie so far.")
    assert LF.leader([fast, run("C", [1.0] * 5)]) is None  # C has no evaluation after the zero-shot one
    assert LF.leader([fast, adam]) is None and LF.leader_text(None) is None


def test_figures_keep_the_zoom_put_the_legend_below_and_stack_memory():
    series = [run("A", [1.0] * 21), run("Adam", [0.5] * 21, reference=True)]
    fig = LF.race_figure(series, "train_loss", x="wall_time_s", smoothing=0.5, revision="loss:wall_time_s")
    assert fig.layout.uirevision == "loss:wall_time_s" and fig.layout.legend.y < 0
    assert [t.showlegend for t in fig.data] == [False, None, False, None]  # faint raw points, then the EMA
    assert fig.data[3].line.dash == "dash" and list(fig.data[1].x)[:2] == [0.0, 0.1]
    with pytest.raises(ValueError, match="unknown x axis 'epochs'; allowed: forward_passes, step, wall_time_s"):
        LF.race_figure(series, "train_loss", x="epochs")
    mem = {"weights": 10**6, "optimizer_state": 2 * 10**6, "peak_total": 3 * 10**6}
    fig = LF.memory_figure([{"label": "Adam", "memory": mem}])
    assert [t.name for t in fig.data] == ["weights", "optimizer state", "peak of all tensors at once"]
    assert fig.layout.barmode == "stack" and list(fig.data[1].x) == [2.0] and list(fig.data[2].x) == [3.0]
    assert LF.records_csv([{"step": 1, "memory": {"weights": 4}}, {"step": 2}]) == "memory.weights,step\n4,1\n,2\n"
