"""A fault-injecting OpenAI-compatible server on 127.0.0.1 for client tests (not a test module).

Each request takes the next *action*: from ``per_prompt[prompt]`` when the request's prompt (or last
chat message) has a list there, else from the shared ``actions`` list, else ``default``. Actions:

- ``"ok"`` — 200, text ``"A:" + prompt``; ``"ok:TEXT"`` — 200 with ``TEXT``; with ``n`` in the
  request, ``n`` choices (the i-th after the first ends with `` #i``); ``"one"`` — like ``ok`` but
  always one choice (a server that ignores ``n``)
- ``"429"`` — 429 without Retry-After; ``"429:VALUE"`` — with ``Retry-After: VALUE``
- ``"400"``, ``"401"``, ``"404"``, ``"500"``, ``"503"`` — that status with an OpenAI error body
- ``"hang:SECONDS"`` — sleep (interruptible by shutdown), then answer ``ok``
- ``"tools:JSON"`` — 200, a chat message with no content and ``tool_calls`` = the JSON list (finish
  reason ``tool_calls``)
- ``"badjson"`` — 200 with a body that is not JSON; ``"nochoices"`` — 200 JSON without ``choices``
- ``"drop"`` — close the connection without answering

``echo_auth=True`` makes every non-ok body contain the request's Authorization header, like a
careless proxy would: the client must scrub the key. Tests load this file by path (the suite uses
``--import-mode=importlib``).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Handler(BaseHTTPRequestHandler):
    server: _HTTP
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # keep test output clean
        pass

    def _write(self, status: int, data: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        fs = self.server.fault
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        chat = "messages" in body
        prompt = body["messages"][-1]["content"] if chat else body["prompt"]
        with fs.lock:
            fs.requests.append({"path": self.path, "body": body, "headers": dict(self.headers)})
            queue = fs.per_prompt.get(prompt)
            if queue:
                action = queue.pop(0)
            elif fs.actions:
                action = fs.actions.pop(0)
            else:
                action = fs.default
            fs.in_flight += 1
            fs.max_in_flight = max(fs.max_in_flight, fs.in_flight)
        try:
            self._act(action, prompt, chat, int(body.get("n", 1)))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout): that is the point of "hang"
        finally:
            with fs.lock:
                fs.in_flight -= 1

    def _act(self, action: str, prompt: str, chat: bool, n: int = 1) -> None:
        fs = self.server.fault
        kind, _, arg = action.partition(":")
        echo = f" (auth was {self.headers.get('Authorization')})" if fs.echo_auth else ""
        if kind == "hang":
            fs.stopping.wait(float(arg))
            kind, arg = "ok", ""
        if fs.delay:
            time.sleep(fs.delay)
        if kind in ("ok", "one"):
            text = arg or f"A:{prompt}"
            choices = []
            for i in range(n if kind == "ok" else 1):
                t = text if i == 0 else f"{text} #{i}"
                choice: dict[str, Any] = {"index": i, "finish_reason": "stop"}
                choice.update({"message": {"role": "assistant", "content": t}} if chat else {"text": t})
                choices.append(choice)
            usage = {
                "prompt_tokens": 7,
                "completion_tokens": 3,
                "prompt_tokens_details": {"cached_tokens": 2},
            }
            self._write(200, json.dumps({"choices": choices, "usage": usage}).encode())
        elif kind == "tools":
            message = {"role": "assistant", "content": None, "tool_calls": json.loads(arg)}
            choice = {"index": 0, "finish_reason": "tool_calls", "message": message}
            self._write(200, json.dumps({"choices": [choice], "usage": {"prompt_tokens": 7}}).encode())
        elif kind == "429":
            self._write(429, _err("rate limited" + echo), {"Retry-After": arg} if arg else None)
        elif kind.isdigit():
            self._write(int(kind), _err(f"injected {kind}" + echo))
        elif kind == "badjson":
            self._write(200, b"<html>not json" + echo.encode())
        elif kind == "nochoices":
            self._write(200, json.dumps({"object": "text_completion", "note": echo}).encode())
        elif kind == "drop":
            self.close_connection = True
        else:
            raise ValueError(f"unknown fault action {action!r}")


def _err(message: str) -> bytes:
    return json.dumps({"error": {"message": message, "type": "test"}}).encode()


class _HTTP(ThreadingHTTPServer):
    daemon_threads = True
    fault: FaultServer


class FaultServer:
    """The server; see the module docstring. ``requests`` records every request received."""

    def __init__(
        self,
        actions: list[str] | None = None,
        default: str = "ok",
        per_prompt: dict[str, list[str]] | None = None,
        echo_auth: bool = False,
        delay: float = 0.0,
    ):
        self.actions = list(actions or [])
        self.default = default
        self.per_prompt = {k: list(v) for k, v in (per_prompt or {}).items()}
        self.echo_auth = echo_auth
        self.delay = delay
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.in_flight = self.max_in_flight = 0
        self._http = _HTTP(("127.0.0.1", 0), _Handler)
        self._http.fault = self
        self._thread = threading.Thread(target=self._http.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """The base URL to give a client (``http://127.0.0.1:PORT/v1``)."""
        return f"http://127.0.0.1:{self._http.server_address[1]}/v1"

    def shutdown(self) -> None:
        self.stopping.set()
        self._http.shutdown()
        self._http.server_close()

    def __enter__(self) -> FaultServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
