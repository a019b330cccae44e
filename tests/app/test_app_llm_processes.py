"""The LLM page's "processes" option (data-parallel runs): validated like any input, passed to start_run."""

from __future__ import annotations

from conftest import open_page, text

LLM = "app_pages/llm.py"


def no_crash(at):
    assert not at.exception, [e.value for e in at.exception]


def test_processes_out_of_range_in_a_link_is_a_warning(tmp_path, monkeypatch):
    monkeypatch.setenv("ADAMEZO_RUNS_DIR", str(tmp_path))
    at = open_page(LLM, {"view": "llm", "processes": "0"})
    no_crash(at)
    assert any("processes='0' is out of range; allowed: an integer from 1 to 64" in text(w) for w in at.warning)
    assert at.number_input(key="llm:processes").value == 1


def test_three_processes_on_the_cpu_do_not_start_and_say_what_is_allowed(tmp_path, monkeypatch):
    monkeypatch.setenv("ADAMEZO_RUNS_DIR", str(tmp_path))
    at = open_page(LLM, {"view": "llm", "opts": "mezo", "device": "cpu", "processes": "3", "steps": "5"})
    no_crash(at)
    assert at.number_input(key="llm:processes").value == 3
    at.button(key="llm:start").click().run()
    no_crash(at)
    assert any("MeZO did not start" in text(e) and "invalid processes=3; allowed: an integer from 1 to 2 on the CPU"
               in text(e) for e in at.error), [text(e) for e in at.error]


def test_two_processes_reach_start_run(tmp_path, monkeypatch):
    from llm_demo import runs

    monkeypatch.setenv("ADAMEZO_RUNS_DIR", str(tmp_path))
    calls = []

    def fake_start_run(name, **kw):
        calls.append((name, kw))
        raise ValueError("not started in this test")

    monkeypatch.setattr(runs, "start_run", fake_start_run)
    at = open_page(LLM, {"view": "llm", "opts": "mezo", "device": "cpu", "processes": "2", "steps": "5"})
    at.button(key="llm:start").click().run()
    no_crash(at)
    assert calls and calls[0][0] == "mezo" and calls[0][1]["processes"] == 2 and calls[0][1]["device"] == "cpu"
