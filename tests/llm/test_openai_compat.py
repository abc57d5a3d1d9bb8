"""OpenAILLM against a local fault-injecting server: retries, no-retry 4xx, order, key redaction."""

from __future__ import annotations

import json
import logging
import socket
import time

import pytest

from reactlab.llm import make_llm
from reactlab.llm.openai_compat import OpenAILLM
from reactlab.types import GenParams, Usage

FAST = dict(backoff_base=0.01, backoff_max=0.05, timeout=0.5)  # keeps the whole file fast
KEY = "sk-test-SECRET123abcdefXYZ"


def _llm(server, **kw) -> OpenAILLM:
    opts = dict(FAST, api_key="test-key", concurrency=4, max_retries=3)
    opts.update(kw)
    return OpenAILLM("m", base_url=server.url, **opts)


@pytest.mark.parametrize("fault", ["429", "429:0", "500", "503", "hang:3", "badjson", "nochoices", "drop"])
def test_each_retriable_fault_is_retried(fault_server, fault):
    server = fault_server([fault, "ok"])
    [c] = _llm(server, concurrency=1).generate(["hi"], GenParams())
    assert (c.text, c.finish_reason, c.error) == ("A:hi", "stop", None)
    assert len(server.requests) == 2


def test_every_fault_in_a_row_then_success(fault_server):
    faults = ["429", "429:0", "500", "503", "hang:3", "badjson", "nochoices"]
    server = fault_server([*faults, "ok"])
    [c] = _llm(server, max_retries=len(faults)).generate(["q"], GenParams())
    assert c.text == "A:q" and c.finish_reason == "stop"
    assert c.usage == Usage(prompt_tokens=7, completion_tokens=3, cached_tokens=2)
    assert len(server.requests) == len(faults) + 1
    assert c.latency_s >= 0.5  # the hang waited out the client timeout


@pytest.mark.parametrize("status", ["400", "401", "404"])
def test_client_errors_are_not_retried(fault_server, status):
    server = fault_server([status, "ok"])
    [c] = _llm(server).generate(["q"], GenParams())
    assert c.finish_reason == "error" and c.text == ""
    assert c.error == f"HTTP {status}: injected {status}"  # the server's own message
    assert len(server.requests) == 1


def test_retry_after_is_honoured_and_capped(fault_server):
    server = fault_server(["429:1", "ok"])
    t0 = time.perf_counter()
    [c] = _llm(server, backoff_max=5.0).generate(["q"], GenParams())
    assert c.text == "A:q" and time.perf_counter() - t0 >= 0.9
    server = fault_server(["429:3600", "ok"])  # an absurd Retry-After is capped at backoff_max
    t0 = time.perf_counter()
    [c] = _llm(server, backoff_max=0.1).generate(["q"], GenParams())
    assert c.text == "A:q" and time.perf_counter() - t0 < 2


def test_always_failing_server_returns_every_row_as_error_in_order(fault_server):
    server = fault_server(default="503")
    prompts = [f"p{i}" for i in range(7)]
    outs = _llm(server, max_retries=2, concurrency=3).generate(prompts, GenParams())
    assert len(outs) == 7
    assert all(c.finish_reason == "error" and c.text == "" for c in outs)
    assert all("HTTP 503" in c.error and "3 attempts" in c.error for c in outs)
    assert len(server.requests) == 7 * 3


def test_mixed_rows_keep_their_order(fault_server):
    per_prompt = {"p1": ["500"] * 10, "p3": ["400"], "p4": ["429", "503", "ok"]}
    server = fault_server(per_prompt=per_prompt, delay=0.01)
    prompts = [f"p{i}" for i in range(6)]
    outs = _llm(server, max_retries=2).generate(prompts, GenParams())
    assert [c.text for c in outs] == ["A:p0", "", "A:p2", "", "A:p4", "A:p5"]
    assert [c.finish_reason for c in outs] == ["stop", "error", "stop", "error", "stop", "stop"]


def test_concurrency_is_bounded_and_results_in_order(fault_server):
    server = fault_server(delay=0.05)
    prompts = [f"q{i}" for i in range(16)]
    outs = _llm(server, concurrency=4).generate(prompts, GenParams())
    assert [c.text for c in outs] == [f"A:{p}" for p in prompts]
    assert 2 <= server.max_in_flight <= 4  # really concurrent, and never more than asked


def test_request_body_and_client_side_stops(fault_server):
    server = fault_server(["ok:Thought: x\nAction: a\nObservation 1: y"])
    stops = ["<1>", "<2>", "<3>", "<4>", "\nObservation"]  # the 5th cannot go to the API
    params = GenParams(max_new_tokens=20, temperature=0.7, top_p=0.9, stop=stops, seed=3)
    [c] = _llm(server).generate(["prompt"], params)
    assert (c.text, c.stop, c.finish_reason) == ("Thought: x\nAction: a", "\nObservation", "stop")
    req = server.requests[0]
    assert req["path"] == "/v1/completions"
    assert req["headers"]["Authorization"] == "Bearer test-key"
    body = req["body"]
    assert body["stop"] == stops[:4] and body["prompt"] == "prompt" and body["model"] == "m"
    assert (body["max_tokens"], body["temperature"], body["top_p"], body["seed"]) == (20, 0.7, 0.9, 3)


def test_modes_choose_the_endpoint(fault_server):
    server = fault_server()
    msgs = [{"role": "user", "content": "hello"}]
    auto = _llm(server)
    outs = auto.generate(["text", msgs], GenParams())
    assert {c.text for c in outs} == {"A:text", "A:hello"}
    paths = sorted(r["path"] for r in server.requests)
    assert paths == ["/v1/chat/completions", "/v1/completions"]
    [c] = _llm(server, mode="chat").generate(["as chat"], GenParams())
    assert c.text == "A:as chat"
    assert server.requests[-1]["body"]["messages"] == [{"role": "user", "content": "as chat"}]
    with pytest.raises(ValueError, match="completion"):
        _llm(server, mode="completion").generate(["ok", msgs], GenParams())
    assert len(server.requests) == 3  # the bad batch sent nothing


def test_env_and_make_llm(fault_server, monkeypatch):
    server = fault_server()
    monkeypatch.setenv("OPENAI_BASE_URL", server.url + "/")
    monkeypatch.setenv("OPENAI_API_KEY", "env-key-12345")
    llm = make_llm("openai:some-model", **FAST)
    assert isinstance(llm, OpenAILLM) and llm.name == "openai:some-model"
    [c] = llm.generate(["x"], GenParams())
    assert c.text == "A:x"
    assert server.requests[0]["headers"]["Authorization"] == "Bearer env-key-12345"
    assert server.requests[0]["body"]["model"] == "some-model"


def test_connection_refused_becomes_an_error_row():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed on exit: nothing listens there
    llm = OpenAILLM("m", base_url=f"http://127.0.0.1:{port}/v1", max_retries=1, **FAST)
    [c] = llm.generate(["q"], GenParams())
    assert c.finish_reason == "error" and "connection error" in c.error and "2 attempts" in c.error


def test_api_key_never_leaks(fault_server, caplog, capsys):
    """Provoke every failure path with a server that echoes the Authorization header back."""
    caplog.set_level(logging.DEBUG)
    server = fault_server(
        per_prompt={
            "bad-request": ["400"],
            "unauthorized": ["401"],
            "rate": ["429:0"] * 3,
            "server": ["500"] * 3,
            "hang": ["hang:3"] * 3,
            "badjson": ["badjson"] * 3,
            "nochoices": ["nochoices"] * 3,
            "drop": ["drop"] * 3,
        },
        echo_auth=True,
    )
    llm = OpenAILLM("m", base_url=server.url, api_key=KEY, max_retries=2, concurrency=8, **FAST)
    prompts = ["bad-request", "unauthorized", "rate", "server", "hang", "badjson", "nochoices", "drop"]
    outs = llm.generate(prompts, GenParams())
    assert all(c.finish_reason == "error" for c in outs), outs
    assert server.requests[0]["headers"]["Authorization"] == f"Bearer {KEY}"  # it was sent...
    assert "auth was Bearer ***" in outs[0].error  # ...and echoed back, scrubbed
    # A connection that cannot even be made.
    dead = OpenAILLM("m", base_url="http://127.0.0.1:9/v1", api_key=KEY, max_retries=1, **FAST)
    outs += dead.generate(["q"], GenParams())
    out, err = capsys.readouterr()
    seen = [repr(llm), str(llm), repr(vars(llm)), repr(dead), caplog.text, out, err]
    seen += [repr(c) for c in outs]
    for text in seen:
        assert KEY not in text and "SECRET123" not in text
    assert "***" in repr(llm) and caplog.records  # the retries were logged, scrubbed


def test_n_samples_come_back_as_samples(fault_server):
    server = fault_server(["ok:x\nObservation 1: y", "one"])
    llm = _llm(server, max_retries=0)
    [c] = llm.generate(["p"], GenParams(n=3, temperature=0.8, stop=["\nObservation"]))
    assert server.requests[0]["body"]["n"] == 3
    assert [s.text for s in c.samples] == ["x", "x", "x"]  # each choice is cut at the stop client-side
    assert [s.stop for s in c.samples] == ["\nObservation"] * 3 and c.text == "x"
    assert c.usage == c.samples[0].usage and c.samples[1].usage == Usage()  # the request counted once
    assert all(not s.samples for s in c.samples)
    [bad] = llm.generate(["p"], GenParams(n=2))  # a server that ignores n
    assert bad.finish_reason == "error" and "asked for n=2 samples, the server returned 1" in bad.error


def test_a_tool_chat_sends_tools_and_reads_tool_calls(fault_server):
    from reactlab.agents.tools import action_tools, reply_to_action, tool_schemas
    from reactlab.types import Action, ToolChat

    calls = [{"id": "call_9", "type": "function", "function": {"name": "finish", "arguments": '{"answer": "yes"}'}}]
    server = fault_server(["tools:" + json.dumps(calls), "ok:plain"])
    tools = tool_schemas(action_tools())
    prior = {"id": "call_1", "type": "function", "function": {"name": "search", "arguments": '{"entity": "X"}'}}
    chat = ToolChat([{"role": "user", "content": "q?"},
                     {"role": "assistant", "content": "Search.", "tool_calls": [prior]},
                     {"role": "tool", "tool_call_id": "call_1", "name": "search", "content": "X is."}], tools)
    [c] = _llm(server, tool_choice="required").generate([chat], GenParams(stop=["</tool_call>"]))
    assert (c.text, c.tool_calls, c.finish_reason) == ("", calls, "stop")
    assert reply_to_action({"content": c.text, "tool_calls": c.tool_calls}) == Action("finish", "yes")
    body = server.requests[0]["body"]
    assert body["tools"] == tools and body["tool_choice"] == "required"
    assert body["messages"][1]["tool_calls"] == [prior]
    assert body["messages"][2] == {"role": "tool", "content": "X is.", "tool_call_id": "call_1"}
    [plain] = _llm(server).generate([list(chat)], GenParams())  # a plain chat sends no tools
    assert plain.tool_calls is None and "tools" not in server.requests[1]["body"]
    with pytest.raises(ValueError, match="tool_choice"):
        _llm(server, tool_choice="none")
    with pytest.raises(ValueError, match="mode='completion'"):
        _llm(server, mode="completion").generate([chat], GenParams())
