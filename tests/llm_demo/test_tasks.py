"""Tests for the bundled task, the bundled tiny OPT and the llm_demo.tasks API (fast, CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from llm_demo import corpus
from llm_demo.tasks import (BUNDLED_GRADED, BUNDLED_MODEL, BUNDLED_TASK, Task, encode, evaluate, load_model,
                            load_task, loss_fn, subset, verbalizer_ids, verbalizer_logits)


@pytest.fixture(scope="module")
def bundled():
    torch.set_num_threads(1)
    model, tok = load_model(BUNDLED_MODEL)
    return model, tok, load_task(BUNDLED_TASK)


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_bundled_splits_have_expected_sizes_and_both_labels(bundled):
    task = bundled[2]
    assert {k: len(v) for k, v in task.splits.items()} == {"train": 1600, "dev": 200, "test": 400}
    for split, examples in task.splits.items():
        labels = [ex["label"] for ex in examples]
        assert set(labels) == {0, 1}, split
        assert abs(sum(labels) - len(labels) / 2) <= 1, split  # balanced
    assert task.template == "{text} It was"
    assert task.verbalizers == (" bad", " good")
    assert task.eval_split == "dev"


def test_bundled_task_matches_its_generator():
    task = load_task(BUNDLED_TASK)
    info = json.loads((BUNDLED_TASK / "task.json").read_text())
    regenerated = corpus.make_task(seed=info["seed"])
    assert regenerated == task.splits


def test_test_split_uses_only_held_out_sentiment_words(bundled):
    task = bundled[2]
    train_neg, train_pos = corpus.lexicon("train")
    held_neg, held_pos = corpus.lexicon("test")
    assert not set(train_neg + train_pos) & set(held_neg + held_pos)
    for ex in task.splits["test"][:100]:
        words = set(ex["text"].replace(".", " ").replace(",", " ").split())
        assert not words & set(train_neg + train_pos)
        assert words & set(held_pos if ex["label"] else held_neg)


def test_verbalizers_are_single_tokens(bundled):
    _, tok, task = bundled
    ids = verbalizer_ids(task, tok)
    assert len(ids) == 2 and ids[0] != ids[1]
    for v, i in zip(task.verbalizers, ids):
        assert tok.decode([i]) == v
    bad = Task(path=Path("x"), splits={}, verbalizers=(" bad", " unbelievablyxyz"))
    with pytest.raises(ValueError, match="exactly one token"):
        verbalizer_ids(bad, tok)


def test_malformed_json_line_names_file_and_line(tmp_path):
    f = _write(tmp_path / "train.jsonl", ['{"text": "fine", "label": 1}', '{"text": "oops", "label": 0'])
    with pytest.raises(ValueError) as e:
        load_task(f)
    assert f"{f} line 2:" in str(e.value) and "not valid JSON" in str(e.value)


def test_missing_field_names_file_and_line(tmp_path):
    f = _write(tmp_path / "data.jsonl", ['{"text": "a", "label": 1}', "", '{"text": "b"}'])
    with pytest.raises(ValueError, match=r"data\.jsonl line 3: missing field 'label'"):
        load_task(f)
    f = _write(tmp_path / "data.jsonl", ['{"label": 1}'])
    with pytest.raises(ValueError, match=r"data\.jsonl line 1: missing field 'text'"):
        load_task(f)


@pytest.mark.parametrize("label", ["2", "-1", '"1"', "true", "0.5"])
def test_bad_label_names_file_and_line(tmp_path, label):
    f = _write(tmp_path / "train.jsonl", ['{"text": "a", "label": 0}', '{"text": "b", "label": %s}' % label])
    with pytest.raises(ValueError, match=r"train\.jsonl line 2: field 'label' must be 0 or 1"):
        load_task(tmp_path)


def test_wrong_paths_raise_value_error(tmp_path):
    with pytest.raises(ValueError, match="no such task file or folder"):
        load_task(tmp_path / "nope.jsonl")
    with pytest.raises(ValueError, match="none of train.jsonl"):
        load_task(tmp_path)
    with pytest.raises(ValueError, match="no such model folder"):
        load_model(tmp_path / "no-model")
    with pytest.raises(ValueError, match="no config.json"):
        load_model(tmp_path)


def test_task_json_and_per_file_header(tmp_path):
    (tmp_path / "task.json").write_text(json.dumps({"template": "Q: {text} A:", "verbalizers": [" no", " yes", " maybe"]}))
    _write(tmp_path / "train.jsonl", ['{"text": "a", "label": 2}'])
    task = load_task(tmp_path)
    assert task.template == "Q: {text} A:" and task.verbalizers == (" no", " yes", " maybe")
    assert task.prompt("hi") == "Q: hi A:"
    f = _write(tmp_path / "other.jsonl", ['{"template": "{text} =", "verbalizers": [" x", " y"]}',
                                          '{"text": "a", "label": 1}'])
    task = load_task(f)
    assert task.template == "{text} =" and task.verbalizers == (" x", " y")
    assert task.splits == {"train": [{"text": "a", "label": 1}]}
    (tmp_path / "task.json").write_text(json.dumps({"template": "no field", "verbalizers": [" a", " b"]}))
    with pytest.raises(ValueError, match=r"task\.json: 'template' must be a string containing \{text\}"):
        load_task(tmp_path)


def test_bundled_model_reloads_as_float32_with_zero_shot_accuracy_in_band(bundled):
    model, tok, task = bundled
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert 0.5e6 < sum(p.numel() for p in model.parameters()) < 2e6
    loss, acc = evaluate(model, encode(task, tok, task.splits["test"]))
    assert 0.55 <= acc <= 0.75, acc
    assert 0.3 < loss < 2.0


def test_graded_task_is_its_generator_balanced_held_out_and_far_from_solved_zero_shot(bundled):
    """The graded task (negative / mixed / positive): what the generator makes, three balanced labels, dev and
    test only with held-out words (a mixed review has one of each polarity), one-token verbalizers, and the
    bundled model zero-shot far from the ceiling: it never says " fine" and reads most negatives as " good"."""
    model, tok, _ = bundled
    task = load_task(BUNDLED_GRADED)
    info = json.loads((BUNDLED_GRADED / "task.json").read_text())
    assert info["seed"] == 2024 and corpus.make_graded_task(seed=2024) == task.splits
    assert {k: len(v) for k, v in task.splits.items()} == {"train": 1800, "dev": 300, "test": 600}
    assert task.verbalizers == (" bad", " fine", " good") and task.template == "{text} It was"
    assert [tok.decode([i]) for i in verbalizer_ids(task, tok)] == [" bad", " fine", " good"]
    for examples in task.splits.values():
        counts = [sum(ex["label"] == k for ex in examples) for k in range(3)]
        assert counts == [len(examples) // 3] * 3
    train_words = set(sum(corpus.lexicon("train"), ()))
    held_neg, held_pos = map(set, corpus.lexicon("test"))
    for ex in task.splits["test"]:
        words = set(ex["text"].replace(".", " ").replace(",", " ").split())
        assert not words & train_words
        assert (bool(words & held_neg), bool(words & held_pos)) == {0: (True, False), 1: (True, True),
                                                                      2: (False, True)}[ex["label"]]
    batch = encode(task, tok, task.splits["test"])
    with torch.no_grad():
        predicted = verbalizer_logits(model, batch).argmax(-1)
    per_label = [float((predicted[batch["labels"] == k] == k).float().mean()) for k in range(3)]
    assert per_label == pytest.approx([0.33, 0.0, 1.0], abs=1e-6)
    assert float((predicted == batch["labels"]).float().mean()) == pytest.approx(0.4433, abs=1e-4)


def test_auto_classes_load_the_bundle_offline():
    from transformers import AutoModelForCausalLM, AutoTokenizer, OPTForCausalLM

    tok = AutoTokenizer.from_pretrained(BUNDLED_MODEL, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(BUNDLED_MODEL, local_files_only=True)
    assert isinstance(model, OPTForCausalLM)
    assert next(model.parameters()).dtype == torch.float32  # float16 on disk, float32 in memory
    assert tok.is_fast and tok.pad_token_id == 1 and tok.bos_token_id == 2
    ids = tok("A film. It was")["input_ids"]
    assert ids[0] == tok.bos_token_id and tok.decode(ids[1:]) == "A film. It was"


def test_encode_left_pads_and_scores_the_template_end(bundled):
    model, tok, task = bundled
    examples = task.splits["dev"][:5]
    batch = encode(task, tok, examples)
    assert batch["input_ids"].shape == batch["attention_mask"].shape
    assert (batch["attention_mask"][:, -1] == 1).all()
    was = tok(" was", add_special_tokens=False)["input_ids"]
    assert was == [int(batch["input_ids"][0, -1])]
    # Each padded row scores like the same example alone (positions come from the attention mask).
    logits = verbalizer_logits(model, batch)
    for i in range(len(examples)):
        alone = verbalizer_logits(model, encode(task, tok, examples[i:i + 1]))
        torch.testing.assert_close(logits[i:i + 1], alone, atol=1e-4, rtol=1e-4)
    # logits_to_keep=1 gives the same numbers as projecting every position.
    full = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, -1]
    torch.testing.assert_close(logits, full[:, batch["verbalizer_ids"]], atol=1e-5, rtol=1e-5)
    # Truncation keeps BOS and the template's end.
    short = encode(task, tok, examples, max_length=8)
    assert short["input_ids"].shape[1] == 8
    assert (short["input_ids"][:, 0] == tok.bos_token_id).all()
    assert (short["input_ids"][:, -1] == batch["input_ids"][:, -1]).all()


def test_subset_and_loss_fn(bundled):
    model, tok, task = bundled
    batch = encode(task, tok, task.splits["train"][:32])
    part = subset(batch, [3, 1, 4])
    assert part["labels"].tolist() == [batch["labels"][i].item() for i in (3, 1, 4)]
    assert (part["attention_mask"].sum(0) > 0).all()  # no all-padding column left
    with torch.no_grad():
        loss = loss_fn(model, part)
    assert loss.ndim == 0 and torch.isfinite(loss)
    ev_loss, _ = evaluate(model, part)
    assert abs(loss.item() - ev_loss) < 1e-5


def test_corpus_generator_is_deterministic():
    a = corpus.corpus_documents(200, seed=3)
    assert a == corpus.corpus_documents(200, seed=3)
    assert a != corpus.corpus_documents(200, seed=4)
    assert corpus.make_task(seed=5, n_train=20, n_dev=4, n_test=4) == corpus.make_task(seed=5, n_train=20, n_dev=4, n_test=4)
    assert corpus.make_task(seed=5, n_train=20, n_dev=4, n_test=4) != corpus.make_task(seed=6, n_train=20, n_dev=4, n_test=4)
    small = {"n_train": 9, "n_dev": 3, "n_test": 3}
    assert corpus.make_graded_task(seed=5, **small) == corpus.make_graded_task(seed=5, **small)
    assert corpus.make_graded_task(seed=5, **small) != corpus.make_graded_task(seed=6, **small)
    with pytest.raises(ValueError, match="unknown task 'topic'; allowed: sentiment, graded"):
        corpus.write_task("unused", task="topic")


def test_tiny_model_in_tmp_dir_loads_through_load_model(tmp_path, bundled):
    from transformers import OPTConfig, OPTForCausalLM

    _, tok, task = bundled
    torch.manual_seed(0)
    config = OPTConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1, ffn_dim=32,
                       num_attention_heads=2, max_position_embeddings=128, word_embed_proj_dim=16,
                       pad_token_id=1, bos_token_id=2, eos_token_id=2)
    OPTForCausalLM(config).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    model, tok2 = load_model(tmp_path, device="cpu", dtype="float32")
    assert sum(p.numel() for p in model.parameters()) < 50_000
    batch = encode(task, tok2, task.splits["dev"][:4])
    loss, acc = evaluate(model, batch)
    assert 0.0 <= acc <= 1.0 and 0.0 < loss < 5.0
    with pytest.raises(ValueError, match="unknown dtype"):
        load_model(tmp_path, dtype="float33")


def test_texts_lines_and_templates_are_bounded(tmp_path):
    """A 55 MB line once cost 9.4 GB (texts were tokenized whole): long texts and multiplying templates are
    refused at load, naming the file and line."""
    from llm_demo.tasks import MAX_LINE_CHARS, MAX_TEXT_CHARS

    f = _write(tmp_path / "train.jsonl", ['{"text": "fine", "label": 1}',
                                          json.dumps({"text": "x" * (MAX_TEXT_CHARS + 1), "label": 0})])
    with pytest.raises(ValueError, match=r"train\.jsonl line 2: field 'text' has 20,001 characters; at most 20,000 "
                                         r"are allowed"):
        load_task(f)
    f = _write(tmp_path / "long.jsonl", ['{"text": "fine", "label": 1, "pad": "%s"}' % ("y" * MAX_LINE_CHARS)])
    with pytest.raises(ValueError, match=r"long\.jsonl line 1: longer than 160,000 characters"):
        load_task(f)
    _write(tmp_path / "train.jsonl", ['{"text": "fine", "label": 1}'])
    for template, why in (("{text}{text} It was", "exactly once"), ("{text}{x:>999999999} It was", "exactly once"),
                          ("{text:>999999999} It was", r"containing \{text\}"), ("{text} {0} It was", "exactly once"),
                          ("{text} {text!r:>99999999}", "exactly once"),
                          ("{text} " + "z" * 3000, "has 3,007 characters; at most 2,000"),
                          ("{text} {", "not a valid format string")):
        (tmp_path / "task.json").write_text(json.dumps({"template": template, "verbalizers": [" bad", " good"]}))
        with pytest.raises(ValueError, match=why):
            load_task(tmp_path)
    (tmp_path / "task.json").write_text(json.dumps({"template": "{{braces}} {text} It was"}))
    assert load_task(tmp_path).prompt("a") == "{braces} a It was"


def test_encode_in_chunks_equals_encoding_at_once(bundled, monkeypatch):
    from llm_demo import tasks

    _, tok, task = bundled
    examples = task.splits["dev"][:70] + [{"text": "a very long review, " * 300, "label": 1}]
    chunked = encode(task, tok, examples, max_length=32)
    monkeypatch.setattr(tasks, "ENCODE_CHUNK", 10**6)
    whole = encode(task, tok, examples, max_length=32)
    assert chunked.keys() == whole.keys() and all(torch.equal(chunked[k], whole[k]) for k in whole)
    assert chunked["input_ids"].shape == (71, 32)
