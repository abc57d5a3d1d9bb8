"""``reactlab serve --record DIR``: exchanges grouped into conversations, no secret recorded, and a
server killed mid-write leaves only whole records."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from reactlab.data.recorded import read_exchanges
from reactlab.llm.scripted import ScriptedLLM
from reactlab.serve import serve

openai = pytest.importorskip("openai")

CANARY = "sk-canary-7f3a9c1e"


def lines(directory: Path) -> list[dict]:
    [path] = directory.glob("exchanges-*.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_records_hold_the_exchange_and_no_secret(tmp_path):
    rec = tmp_path / "rec"
    with serve(ScriptedLLM({"": "Paris"}), model_name="m", record=str(rec)) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key=CANARY, max_retries=0,
                               default_headers={"X-Api-Key": CANARY, "Cookie": f"session={CANARY}"})
        r = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "Capital of France?"}],
                                           max_tokens=5, temperature=0, user=CANARY, extra_body={"api_key": CANARY})
        assert r.choices[0].message.content == "Paris"
        httpx.post(server.url + "/v1/completions", json={"prompt": "not a chat"})  # completions: not recorded
    assert not any(CANARY.encode() in p.read_bytes() for p in rec.iterdir())
    [record] = lines(rec)
    assert record["request"] == {"messages": [{"role": "user", "content": "Capital of France?"}], "tools": [],
                                 "params": {"model": "m", "max_tokens": 5, "temperature": 0}}
    assert record["reply"] == {"message": {"role": "assistant", "content": "Paris"}, "finish_reason": "stop"}
    assert record["usage"]["completion_tokens"] == 1 and record["conversation_id"].startswith("h-")
    assert time.time() - 60 < record["time"] <= time.time()


def test_exchanges_group_into_conversations(tmp_path):
    rec = tmp_path / "rec"
    with serve(ScriptedLLM({"": "ok"}), model_name="m", record=str(rec)) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0)
        for question in ("q1", "q2"):
            history = [{"role": "system", "content": "sys"}, {"role": "user", "content": question}]
            for _ in range(3):  # an agent's turns: each request resends the history so far
                r = client.chat.completions.create(model="m", messages=history)
                history += [r.choices[0].message.model_dump(exclude_none=True), {"role": "user", "content": "go on"}]
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "q1"}],
                                       extra_headers={"X-Conversation-Id": "mine-1"})
        list(client.chat.completions.create(model="m", messages=[{"role": "user", "content": "q1"}], stream=True))
        bad = httpx.post(server.url + "/v1/chat/completions", headers={"X-Conversation-Id": "x" * 201},
                         json={"messages": [{"role": "user", "content": "x"}]})
        assert bad.status_code == 400 and "X-Conversation-Id" in bad.json()["error"]["message"]
    records = lines(rec)
    ids = [r["conversation_id"] for r in records]
    assert ids[6] == "mine-1" and len(set(ids[:3])) == len(set(ids[3:6])) == 1 and ids[0] != ids[3]
    assert [len(r["request"]["messages"]) for r in records[:3]] == [2, 4, 6]
    # Without a system message, q1 alone is another conversation than system + q1 (the stream's exchange).
    assert ids[7] not in ids[:7] and records[7]["reply"]["message"]["content"] == "ok"


def mid_write(rec: Path) -> bool:
    """Whether the recording holds more than one record and ends inside another (a write in progress)."""
    for path in rec.glob("*.jsonl"):
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            return size > 4_000_000 and os.pread(f.fileno(), 1, size - 1) != b"\n"
    return False


def test_a_server_killed_mid_write_leaves_whole_records(tmp_path):
    """kill -9 while a large exchange is being written: every whole line parses, and the line the kill
    cut short (no newline yet; the kernel may stop a multi-page write midway) is all a reader skips."""
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"": "ok"}))
    rec = tmp_path / "rec"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-m", "reactlab.cli", "serve", f"scripted:{script}", "--port", "0",
                             "--record", str(rec)], stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stderr.readline()
        assert "serving" in line, line
        url = line.split(" at ")[1].split()[0]
        big = "lorem ipsum " * 300_000  # ~3.6 MB per record: each write + fsync takes a while
        stop = threading.Event()

        def ask(k):
            with httpx.Client(timeout=30) as c:
                while not stop.is_set():
                    try:
                        c.post(url + "/chat/completions", json={"messages": [
                            {"role": "user", "content": f"q{k}"}, {"role": "user", "content": big}]})
                    except httpx.HTTPError:
                        return

        threads = [threading.Thread(target=ask, args=(k,), daemon=True) for k in range(4)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not mid_write(rec):  # a record whole, the next one begun
            time.sleep(0.001)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        stop.set()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    [path] = rec.glob("exchanges-*.jsonl")
    raw = path.read_bytes()
    whole = raw[: raw.rfind(b"\n") + 1].splitlines()
    assert len(whole) >= 1 and all(json.loads(line)["reply"]["message"]["content"] == "ok" for line in whole)
    exchanges, torn = read_exchanges(rec)
    assert len(exchanges) == len(whole) and torn == (len(raw) > sum(len(x) + 1 for x in whole))
