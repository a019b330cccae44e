"""The LLM page's LoRA option: validated like any input, and passed to the runs it starts (what
``runs.start_run`` makes of it is tested in tests/llm_demo/test_adapters.py)."""

from __future__ import annotations

from conftest import open_page, text

from llm_demo import runs

LLM = "app_pages/llm.py"


def no_crash(at):
    assert [e.value for e in at.exception] == []


def test_an_out_of_range_lora_rank_from_a_link_is_a_clear_message(tmp_path, monkeypatch):
    monkeypatch.setenv("ADAMEZO_RUNS_DIR", str(tmp_path))
    for bad in ("999", "-1", "four"):
        at = open_page(LLM, {"view": "llm", "lora": bad})
        no_crash(at)
        warnings = [text(w) for w in at.warning]
        assert len(warnings) == 1 and warnings[0].startswith(f"Ignored the link's lora={bad!r}") \
            and warnings[0].endswith("Using lora=0 instead."), warnings
        if bad != "four":
            assert warnings[0] == (f"Ignored the link's lora={bad!r} is out of range; allowed: an integer from 0 "
                                   "to 256. Using lora=0 instead.")
        assert at.number_input(key="llm:lora").value == 0  # the default: all weights


def test_the_page_passes_the_lora_rank_to_the_run_it_starts(tmp_path, monkeypatch):
    monkeypatch.setenv("ADAMEZO_RUNS_DIR", str(tmp_path))
    started = []

    def fake_start(name, **kw):  # what the page asks for; start_run itself is tested below
        started.append((name, kw))
        raise ValueError("not started in this test")

    monkeypatch.setattr(runs, "start_run", fake_start)
    at = open_page(LLM, {"view": "llm", "opts": "mezo,adamezo", "lora": "8", "steps": "5"})
    no_crash(at)
    assert at.number_input(key="llm:lora").value == 8
    at.button(key="llm:start").click().run()
    assert [(n, kw["lora_r"], kw["steps"]) for n, kw in started] == [("mezo", 8, 5), ("adamezo", 8, 5)]
    assert any("MeZO did not start: not started in this test" in text(e) for e in at.error)
    started.clear()
    at = open_page(LLM, {"view": "llm", "opts": "mezo", "lora": "0"})
    at.button(key="llm:start").click().run()
    assert [kw["lora_r"] for _, kw in started] == [None]
