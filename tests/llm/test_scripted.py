"""ScriptedLLM: order, stop strings, length, usage, exhaustion, file sources."""

from __future__ import annotations

import json

import pytest

from reactlab.llm import make_llm
from reactlab.llm.scripted import ScriptedLLM, ScriptExhausted, finish
from reactlab.types import LLM, GenParams


def test_pops_in_order_across_calls():
    llm = ScriptedLLM(["a", "b", "c"])
    assert isinstance(llm, LLM)
    assert [c.text for c in llm.generate(["p1", "p2"], GenParams())] == ["a", "b"]
    assert [c.text for c in llm.generate(["p3"], GenParams())] == ["c"]
    assert llm.calls == [["p1", "p2"], ["p3"]] and llm.remaining == 0


def test_stop_cuts_at_the_earliest_stop():
    llm = ScriptedLLM(["Thought 1: x\nAction 1: Search[y]\nObservation 1: z", "no stops here"])
    outs = llm.generate(["q", "q"], GenParams(stop=["\nObservation", "\nAction"]))
    assert (outs[0].text, outs[0].stop, outs[0].finish_reason) == ("Thought 1: x", "\nAction", "stop")
    assert (outs[1].text, outs[1].stop, outs[1].finish_reason) == ("no stops here", None, "stop")


def test_max_new_tokens_truncates_with_length():
    c = finish("one two  three four", "p", GenParams(max_new_tokens=3))
    assert (c.text, c.finish_reason, c.stop) == ("one two  three", "length", None)
    c = finish("one two\nObservation: x", "p", GenParams(max_new_tokens=2, stop=["\nObservation"]))
    assert (c.text, c.finish_reason, c.stop) == ("one two", "stop", "\nObservation")  # the stop came first


def test_usage_counts_whitespace_tokens():
    [c] = ScriptedLLM(["three word answer"]).generate(
        [[{"role": "system", "content": "be brief"}, {"role": "user", "content": "why not"}]], GenParams()
    )
    assert (c.usage.prompt_tokens, c.usage.completion_tokens, c.usage.cached_tokens) == (4, 3, 0)


def test_exhaustion_is_a_clear_error_and_consumes_nothing():
    llm = ScriptedLLM(["only one"])
    with pytest.raises(ScriptExhausted, match="ran out: asked for 2 completion\\(s\\), 1 left"):
        llm.generate(["a", "b"], GenParams())
    assert [c.text for c in llm.generate(["a"], GenParams())] == ["only one"]
    with pytest.raises(ScriptExhausted):
        llm.generate(["c"], GenParams())


def test_callable_and_mapping_sources():
    llm = ScriptedLLM(lambda p: f"echo {p}\nObservation", name="echo")
    assert llm.name == "echo"
    assert llm.generate(["x"], GenParams(stop=["\nObservation"]))[0].text == "echo x"
    llm = ScriptedLLM({"capital of France": "Paris", "France": "a country"})
    outs = llm.generate(["What is the capital of France?", "Where is France?"], GenParams())
    assert [c.text for c in outs] == ["Paris", "a country"]
    with pytest.raises(ScriptExhausted, match="no script key"):
        llm.generate(["Germany?"], GenParams())


def test_json_and_jsonl_files(tmp_path):
    (tmp_path / "s.json").write_text(json.dumps(["a", "b"]))
    (tmp_path / "s.jsonl").write_text('"x\\ny"\n\n{"text": "z"}\n')
    (tmp_path / "m.json").write_text(json.dumps({"key": "value"}))
    assert [c.text for c in ScriptedLLM(str(tmp_path / "s.json")).generate(["p", "q"], GenParams())] == [
        "a",
        "b",
    ]
    outs = ScriptedLLM(tmp_path / "s.jsonl").generate(["p", "q"], GenParams())
    assert [c.text for c in outs] == ["x\ny", "z"]
    assert ScriptedLLM(tmp_path / "m.json").generate(["a key"], GenParams())[0].text == "value"
    llm = make_llm(f"scripted:{tmp_path / 's.json'}")
    assert isinstance(llm, ScriptedLLM) and llm.generate(["p"], GenParams())[0].text == "a"


def test_bad_sources_fail_clearly(tmp_path):
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="must be strings"):
        ScriptedLLM(tmp_path / "bad.json")
    (tmp_path / "bad.jsonl").write_text('"ok"\nnot json\n')
    with pytest.raises(ValueError, match="bad.jsonl:2"):
        ScriptedLLM(tmp_path / "bad.jsonl")
    with pytest.raises(TypeError):
        ScriptedLLM(["ok", None])


def test_n_samples_take_n_entries_per_prompt():
    llm = ScriptedLLM(["a\nObservation", "b", "c", "d"])
    out = llm.generate(["p1", "p2"], GenParams(n=2, stop=["\nObservation"]))
    assert [c.text for c in out] == ["a", "c"]
    assert [[s.text for s in c.samples] for c in out] == [["a", "b"], ["c", "d"]]
    assert all(not s.samples for c in out for s in c.samples) and llm.remaining == 0
    assert llm.calls == [["p1", "p2"]]  # the batch as asked, not its samples
    with pytest.raises(ScriptExhausted):
        llm.generate(["p3"], GenParams(n=2))


def test_tool_replies_come_back_as_an_api_returns_them(tmp_path):
    call = {"id": "c1", "type": "function", "function": {"name": "search", "arguments": '{"entity": "X"}'}}
    llm = ScriptedLLM([{"content": "Look it up.", "tool_calls": [call]},
                       'Go.\n<tool_call>\n{"name": "finish", "arguments": {"answer": "y"}}\n</tool_call>\nmore'])
    api, local = llm.generate(["p1", "p2"], GenParams(stop=["</tool_call>"]))
    assert (api.text, api.tool_calls) == ("Look it up.", [call]) and api.usage.completion_tokens > 3
    assert local.tool_calls is None and local.stop == "</tool_call>" and local.text.endswith('{"answer": "y"}}\n')
    path = tmp_path / "s.jsonl"
    path.write_text(json.dumps({"content": None, "tool_calls": [call]}) + "\n" + json.dumps({"text": "a"}) + "\n")
    [c1, c2] = make_llm(f"scripted:{path}").generate(["p", "q"], GenParams())
    assert (c1.text, c1.tool_calls, c2.text) == ("", [call], "a")
    for bad in ({"tool_calls": "search"}, {"content": "x"}, {"content": "x", "tool_calls": [], "extra": 1}, 3):
        with pytest.raises(TypeError, match="script entries must be strings or tool replies"):
            ScriptedLLM([bad])
    path.write_text(json.dumps([{"content": 2, "tool_calls": []}]))
    with pytest.raises(ValueError, match="bad entries: \\[0\\]"):
        make_llm(f"scripted:{path.rename(tmp_path / 's.json')}")
