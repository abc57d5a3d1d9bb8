"""The local OpenAI-compatible server: round trips through OpenAILLM, micro-batching, 400s."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import httpx
import pytest

from reactlab.llm.openai_compat import OpenAILLM
from reactlab.llm.scripted import ScriptedLLM, finish
from reactlab.serve import OpenAIServer, main_serve, serve
from reactlab.types import Completion, GenParams, Prompt

FAST = dict(backoff_base=0.01, backoff_max=0.05, timeout=5.0, max_retries=1)


class RecordingLLM:
    """Answers ``ans:<prompt text>``, records each batch, and takes a while like a real model."""

    name = "recorder"

    def __init__(self, delay: float = 0.05):
        self.delay = delay
        self.batches: list[tuple[list[Prompt], GenParams]] = []
        self.lock = threading.Lock()

    def generate(self, prompts: Sequence[Prompt], params: GenParams) -> list[Completion]:
        with self.lock:
            self.batches.append((list(prompts), params))
        time.sleep(self.delay)
        texts = [p if isinstance(p, str) else p[-1]["content"] for p in prompts]
        return [finish(f"ans:{t}", p, params) for t, p in zip(texts, prompts, strict=True)]


class FailingLLM:
    name = "failing"

    def generate(self, prompts, params):
        raise RuntimeError("the GPU caught fire")


@pytest.fixture
def served():
    servers = []

    def start(llm, **kw):
        servers.append(serve(llm, **kw))
        return servers[-1]

    yield start
    for s in servers:
        s.shutdown()


def test_completion_round_trip_with_stop_and_usage(served):
    server = served(ScriptedLLM(["Thought 1: go\nAction 1: Finish[Paris]\nObservation 1: done", "x y"]),
                    aliases=("anything",))
    client = OpenAILLM("anything", base_url=server.url + "/v1", **FAST)
    outs = client.generate(["Question: capital?\n", "q2"], GenParams(stop=["\nObservation"]))
    # Two concurrent clients: which script line each gets depends on arrival order.
    by_text = {c.text: c for c in outs}
    assert set(by_text) == {"Thought 1: go\nAction 1: Finish[Paris]", "x y"}
    c = by_text["Thought 1: go\nAction 1: Finish[Paris]"]
    assert (c.stop, c.finish_reason) == ("\nObservation", "stop")  # via the server's stop_reason
    assert c.usage.completion_tokens == 6 and c.usage.prompt_tokens in (1, 2)


def test_chat_round_trip_and_length(served):
    server = served(ScriptedLLM(["one two three four"]), model_name="tiny")
    client = OpenAILLM("tiny", base_url=server.url + "/v1", mode="chat", **FAST)
    [c] = client.generate(["hello there"], GenParams(max_new_tokens=2))
    assert (c.text, c.finish_reason) == ("one two", "length")
    assert (c.usage.prompt_tokens, c.usage.completion_tokens) == (2, 2)


def test_raw_response_shapes(served):
    server = served(RecordingLLM(delay=0), model_name="tiny")
    models = httpx.get(server.url + "/v1/models").json()
    assert models["object"] == "list" and models["data"][0]["id"] == "tiny"
    r = httpx.post(server.url + "/v1/completions", json={"prompt": ["a", "b"], "stop": "\n", "n": 2})
    body = r.json()
    assert r.status_code == 200 and body["object"] == "text_completion" and body["model"] == "tiny"
    assert [ch["text"] for ch in body["choices"]] == ["ans:a", "ans:a", "ans:b", "ans:b"]
    assert [ch["index"] for ch in body["choices"]] == [0, 1, 2, 3]
    assert (
        body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]
    )
    msgs = [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    body = httpx.post(server.url + "/v1/chat/completions", json={"messages": msgs, "max_tokens": 5}).json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "ans:hi"}
    assert body["choices"][0]["finish_reason"] == "stop"


def test_concurrent_requests_are_micro_batched(served):
    llm = RecordingLLM(delay=0.05)
    server = served(llm)
    client = OpenAILLM(server.model_name, base_url=server.url + "/v1", concurrency=8, **FAST)
    prompts = [f"question {i}" for i in range(8)]
    outs = client.generate(prompts, GenParams(stop=["\n"]))
    assert [c.text for c in outs] == [f"ans:{p}" for p in prompts]
    assert all(c.finish_reason == "stop" for c in outs)
    assert 1 <= len(llm.batches) < 8
    assert sorted(p for batch, _ in llm.batches for p in batch) == sorted(prompts)
    assert all(params.stop == ["\n"] for _, params in llm.batches)


def test_different_params_are_never_merged(served):
    llm = RecordingLLM(delay=0.02)
    server = served(llm, batch_window_s=0.1)
    url = server.url + "/v1/completions"
    wanted = {"a": 10, "b": 20, "c": 10}  # prompt -> max_tokens: a and c may share a batch, b may not
    results = {}

    def ask(prompt):
        body = {"prompt": prompt, "max_tokens": wanted[prompt]}
        results[prompt] = httpx.post(url, json=body, timeout=5).json()["choices"][0]["text"]

    threads = [threading.Thread(target=ask, args=(p,)) for p in wanted]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {"a": "ans:a", "b": "ans:b", "c": "ans:c"}
    for batch, params in llm.batches:
        assert all(wanted[p] == params.max_new_tokens for p in batch)
    assert len(llm.batches) in (2, 3)


@pytest.mark.parametrize(
    "path, payload, message",
    [
        ("/v1/completions", b"{not json", "not valid JSON"),
        ("/v1/completions", b"[1]", "JSON object"),
        ("/v1/completions", b"{}", "'prompt' must be"),
        ("/v1/completions", b'{"prompt": [1, 2]}', "token ids are not supported"),
        ("/v1/completions", b'{"prompt": "x", "max_tokens": 0}', "max_tokens"),
        ("/v1/completions", b'{"prompt": "x", "max_tokens": "9"}', "wrong type"),
        ("/v1/completions", b'{"prompt": "x", "stop": [1]}', "'stop'"),
        ("/v1/completions", b'{"prompt": "x", "stream": 1}', "'stream' has the wrong type"),
        ("/v1/completions", b'{"prompt": "x", "temperature": 9}', "temperature"),
        ("/v1/chat/completions", b'{"messages": []}', "'messages'"),
        ("/v1/chat/completions", b'{"messages": [{"content": "x"}]}', "'role'"),
        ("/v1/chat/completions", b'{"messages": [{"role": "user", "content": 3}]}', "content"),
        ("/v1/chat/completions", b'{"messages": [{"role": "user", "content": null}]}', "content must be a string"),
        ("/v1/completions", b'{"prompt": "x", "extra": ' + b"[" * 5000 + b"]" * 5000 + b"}", "nested deeper than 64"),
        ("/v1/completions", b'{"prompt": "x", "extra": ' + b"[" * 100 + b"]" * 100 + b"}", "nested deeper than 64"),
        ("/v1/completions", b'{"prompt": "x", "user": "\\ud800"}', "field 'user' holds \\ud800"),
        ("/v1/completions", b'{"prompt": "x", "stream": true, "stream_options": 3}', "'stream_options' has the wrong"),
    ],
)
def test_bad_requests_get_clear_400s(served, path, payload, message):
    llm = RecordingLLM(delay=0)
    server = served(llm)
    r = httpx.post(server.url + path, content=payload, headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert message in r.json()["error"]["message"]
    assert llm.batches == []


def test_unknown_routes_and_model_failures(served):
    server = served(FailingLLM())
    assert httpx.post(server.url + "/v1/embeddings", json={}).status_code == 404
    assert httpx.get(server.url + "/nope").status_code == 404
    r = httpx.post(server.url + "/v1/completions", json={"prompt": "x"})
    assert r.status_code == 500 and "GPU caught fire" in r.json()["error"]["message"]
    # The client sees a retried 5xx and finally an error row, not an exception.
    [c] = OpenAILLM(server.model_name, base_url=server.url + "/v1", **FAST).generate(["x"], GenParams())
    assert c.finish_reason == "error" and "GPU caught fire" in c.error


def test_shutdown_is_quick_and_idempotent():
    server = serve(RecordingLLM(delay=0))
    httpx.get(server.url + "/v1/models")
    t0 = time.perf_counter()
    server.shutdown()
    server.shutdown()
    assert time.perf_counter() - t0 < 2


def test_main_serve_builds_the_model_from_a_spec(tmp_path, monkeypatch, capsys):
    script = tmp_path / "script.json"
    script.write_text('["hello"]')
    seen = []

    def wait_once(self):  # instead of serving forever: one request, then stop
        seen.append(httpx.post(self.url + "/v1/completions", json={"prompt": "hi"}).json())
        self.shutdown()

    monkeypatch.setattr(OpenAIServer, "wait", wait_once)
    main_serve(f"scripted:{script}", host="127.0.0.1", port=0)
    assert seen[0]["model"] == f"scripted:{script}" and seen[0]["choices"][0]["text"] == "hello"
    assert "serving scripted:" in capsys.readouterr().err


def test_a_real_hf_model_served_answers_as_it_does_in_process(served, tiny_model_dir):
    """The HF backend (its batching engine) behind the server: concurrent clients get exactly the
    completions the same model gives in process, chat and completion alike."""
    pytest.importorskip("torch")
    from reactlab.llm.hf import HFLLM

    llm = HFLLM(tiny_model_dir, batch_size=8)
    server = served(llm, model_name="tiny")
    client = OpenAILLM("tiny", base_url=server.url + "/v1", concurrency=4, **FAST)
    prompts = [f"Question: what is item {i}?\nThought 1:" for i in range(6)]
    params = GenParams(max_new_tokens=12, stop=["\nObservation"])
    want = [c.text for c in llm.generate(prompts, params)]
    assert [c.text for c in client.generate(prompts, params)] == want
    chat = [[{"role": "user", "content": p}] for p in prompts[:3]]
    want_chat = [c.text for c in llm.generate(chat, params)]
    assert [c.text for c in client.generate(chat, params)] == want_chat


def test_a_short_request_is_not_held_behind_a_long_one_and_a_gone_client_is_cancelled(served, tiny_model_dir):
    """With the HF engine the server batches continuously: a short request sent while a long one
    decodes joins at the next step and comes back first; a client that disconnects has its
    generation cancelled (the engine goes idle long before the long request would have ended)."""
    pytest.importorskip("torch")
    from reactlab.llm.hf import HFLLM

    llm = HFLLM(tiny_model_dir, batch_size=8, draft_tokens=0)
    server = served(llm, max_tokens_cap=4000)
    url = server.url + "/v1/completions"
    long_body = {"prompt": "Question: tell me everything.\nThought 1:", "max_tokens": 1500}
    ends: dict[str, float] = {}

    def send(name, body, timeout=120.0):
        try:
            httpx.post(url, json=body, timeout=timeout)
        except httpx.TimeoutException:
            pass
        ends[name] = time.perf_counter()

    long = threading.Thread(target=send, args=("long", long_body))
    long.start()
    while not llm.engine.active:  # the long request is decoding
        time.sleep(0.01)
    send("short", {"prompt": "Question: who?\nThought 1:", "max_tokens": 4})
    assert "long" not in ends and llm.engine.busy()  # the short one came back while the long one decodes
    long.join()
    assert ends["short"] < ends["long"]
    steps = llm.engine.steps
    gone = threading.Thread(target=send, args=("gone", long_body, 0.3))  # the client gives up after 0.3 s
    gone.start()
    gone.join()
    deadline = time.monotonic() + 10
    while llm.engine.busy() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not llm.engine.busy() and llm.engine.steps - steps < 1500  # cancelled, not run to the end


class PickyLLM(RecordingLLM):
    """Fails a whole batch when any prompt in it contains ``boom`` (as a model may on odd input)."""

    def generate(self, prompts, params):
        if any("boom" in (p if isinstance(p, str) else p[-1]["content"]) for p in prompts):
            raise RuntimeError("boom in the batch")
        return super().generate(prompts, params)


def test_one_bad_request_never_hurts_another(served):
    """50 concurrent requests, 10 of them invalid in varied ways (and one that makes the model
    fail): every valid one gets 200 and the completion it gets alone; the others get their own
    4xx/5xx."""
    llm = PickyLLM(delay=0.02)
    server = served(llm)
    url = server.url + "/v1/completions"
    bad = [
        {"prompt": ""}, {"prompt": "\ud800 lone surrogate"}, {"prompt": "x", "seed": 2**70},
        {"prompt": "x", "max_tokens": 10**9}, {"prompt": "x", "n": 99}, {"prompt": ["ok", ""]},
        {"prompt": "x", "temperature": -1}, {"prompt": 7}, {"messages": "no"}, {"prompt": "x", "top_p": 0},
    ]
    requests = [("good", {"prompt": f"q{i}"}) for i in range(39)] + [("boom", {"prompt": "boom"})]
    requests += [("bad", b) for b in bad]
    results: dict[int, httpx.Response] = {}

    def send(i, body):
        import json as _json

        content = _json.dumps(body, ensure_ascii=True).encode()  # a lone surrogate travels escaped
        results[i] = httpx.post(url, content=content, headers={"Content-Type": "application/json"}, timeout=30)

    threads = [threading.Thread(target=send, args=(i, b)) for i, (_, b) in enumerate(requests)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, (kind, body) in enumerate(requests):
        r = results[i]
        if kind == "good":
            assert r.status_code == 200 and r.json()["choices"][0]["text"] == f"ans:{body['prompt']}", r.text
        elif kind == "boom":
            assert r.status_code == 500 and "boom in the batch" in r.json()["error"]["message"]
        else:
            assert r.status_code == 400 and r.json()["error"]["message"], (body, r.text)
    alone = httpx.post(url, json={"prompt": "q3"}).json()["choices"][0]["text"]
    assert alone == "ans:q3"


def test_every_status_is_json(served):
    server = served(RecordingLLM(delay=0))
    for method in ("PUT", "DELETE", "PATCH"):
        r = httpx.request(method, server.url + "/v1/completions", json={"prompt": "x"})
        assert r.status_code == 405 and "not allowed" in r.json()["error"]["message"]
    r = httpx.post(server.url + "/v1/completions", content=b'{"prompt": "\xff\xfe"}',
                   headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "not UTF-8" in r.json()["error"]["message"]
    r = httpx.post(server.url + "/v1/completions", json={"prompt": "x", "max_tokens": 10**9})
    assert r.status_code == 400 and "at most 4096 tokens" in r.json()["error"]["message"]


def test_a_body_that_never_arrives_is_let_go(served, monkeypatch):
    import socket

    from reactlab.serve import app as serve_mod

    monkeypatch.setattr(serve_mod._Handler, "timeout", 0.5)
    server = served(RecordingLLM(delay=0))
    host, port = server.server_address[:2]
    with socket.create_connection((host, port), timeout=5) as s:
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"prompt\"")
        t0 = time.perf_counter()
        reply = s.recv(4096)
    assert b"408" in reply.split(b"\r\n")[0] and time.perf_counter() - t0 < 3
    assert httpx.get(server.url + "/v1/models").status_code == 200  # the server is fine


def test_sigterm_stops_the_server_cleanly(tmp_path):
    import signal
    import subprocess
    import sys

    script = tmp_path / "script.json"
    script.write_text('["hello"]')
    proc = subprocess.Popen([sys.executable, "-m", "reactlab.cli", "serve", f"scripted:{script}", "--port", "0"],
                            stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()
    assert "serving scripted:" in line, line
    url = line.split(" at ")[1].split()[0]
    assert httpx.post(url + "/completions", json={"prompt": "hi"}).json()["choices"][0]["text"] == "hello"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0


def test_a_request_past_its_time_limit_is_cancelled_with_504(served):
    server = served(RecordingLLM(delay=1.5), request_timeout_s=0.3)
    r = httpx.post(server.url + "/v1/completions", json={"prompt": "slow"}, timeout=10)
    assert r.status_code == 504 and "longer than 0.3 s" in r.json()["error"]["message"]


def test_the_openai_client_streams_token_by_token(served, tiny_model_dir):
    """The official client, streaming from the HF engine: many chunks, and their concatenation is
    exactly the non-streamed greedy answer (chat and completions; a stop string inside the text
    is never sent, usage comes last when asked)."""
    pytest.importorskip("torch")
    openai = pytest.importorskip("openai")
    from reactlab.llm.hf import HFLLM

    server = served(HFLLM(tiny_model_dir, batch_size=4), model_name="tiny")
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    messages = [{"role": "user", "content": "Question: what is the capital of France?"}]
    want = client.chat.completions.create(model="tiny", messages=messages, max_tokens=24).choices[0].message.content
    chunks = list(client.chat.completions.create(model="tiny", messages=messages, max_tokens=24, stream=True,
                                                 stream_options={"include_usage": True}))
    pieces = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert "".join(pieces) == want and len([p for p in pieces if p]) > 3
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")

    prompt = "Question: who?\nThought 1:"
    full = client.completions.create(model="tiny", prompt=prompt, max_tokens=30).choices[0].text
    stop = full[len(full) // 2 : len(full) // 2 + 3]  # a stop string in the middle of the answer
    assert stop.strip()
    want = client.completions.create(model="tiny", prompt=prompt, max_tokens=30, stop=[stop]).choices[0].text
    got = "".join(c.choices[0].text for c in client.completions.create(
        model="tiny", prompt=prompt, max_tokens=30, stop=[stop], stream=True))
    assert got == want == full[: full.index(stop)]


def test_models_by_id_and_unknown_models(served):
    server = served(RecordingLLM(delay=0), model_name="tiny", aliases=("gpt-4o-mini",))
    assert httpx.get(server.url + "/v1/models/tiny").json()["id"] == "tiny"
    assert [m["id"] for m in httpx.get(server.url + "/v1/models").json()["data"]] == ["tiny", "gpt-4o-mini"]
    r = httpx.get(server.url + "/v1/models/other")
    assert r.status_code == 404 and r.json()["error"]["type"] == "model_not_found"
    r = httpx.post(server.url + "/v1/completions", json={"model": "other", "prompt": "x"})
    assert r.status_code == 404 and r.json()["error"]["type"] == "model_not_found"
    assert httpx.post(server.url + "/v1/completions", json={"model": "gpt-4o-mini", "prompt": "x"}).status_code == 200
    assert httpx.post(server.url + "/v1/completions", json={"prompt": "x"}).status_code == 200  # no model: served


def test_a_non_streaming_model_streams_in_one_piece(served):
    server = served(RecordingLLM(delay=0), model_name="tiny")
    with httpx.stream("POST", server.url + "/v1/completions", json={"prompt": "hey", "stream": True}) as r:
        lines = [x for x in r.iter_lines() if x]
    assert r.headers["content-type"] == "text/event-stream" and lines[-1] == "data: [DONE]"
    import json as _json

    texts = [_json.loads(x[6:])["choices"][0]["text"] for x in lines[:-1]]
    assert "".join(texts) == "ans:hey"


def test_stream_options_null_and_null_assistant_content_are_answered(served):
    """``"stream_options": null`` is no options; an assistant turn of tool calls has ``content: null``."""
    import json as _json

    server = served(RecordingLLM(delay=0))
    body = {"prompt": "hey", "stream": True, "stream_options": None}
    with httpx.stream("POST", server.url + "/v1/completions", json=body) as r:
        lines = [x for x in r.iter_lines() if x]
    assert r.status_code == 200 and lines[-1] == "data: [DONE]"
    assert "".join(_json.loads(x[6:])["choices"][0]["text"] for x in lines[:-1]) == "ans:hey"
    msgs = [{"role": "user", "content": "q"}, {"role": "assistant", "content": None, "tool_calls": []},
            {"role": "user", "content": "again"}]
    r = httpx.post(server.url + "/v1/chat/completions", json={"messages": msgs})
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "ans:again"
