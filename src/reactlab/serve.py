"""A local OpenAI-compatible server in front of any ``reactlab`` LLM, with micro-batching.

``serve(llm)`` starts a stdlib ``ThreadingHTTPServer`` in a background thread and returns it
(``.url``, ``.shutdown()``). It answers:

- ``POST /v1/completions``: ``prompt`` (a string or a list of strings), ``max_tokens``,
  ``temperature``, ``top_p``, ``stop`` (string or list), ``seed``, ``n``;
- ``POST /v1/chat/completions``: the same with ``messages`` (``max_completion_tokens`` also read);
- ``GET /v1/models``: the one model, named ``model_name``.

Fields left out take ``GenParams``' defaults (greedy, 128 new tokens), not OpenAI's. Choices carry
vLLM's ``stop_reason`` (the stop string that ended the text) so a client can recover
``Completion.stop``. Every answer is JSON: a bad request gets 400 with an OpenAI-shaped
``{"error": {...}}`` body (an empty prompt, text that is not valid Unicode, a body that is not
UTF-8 JSON, numbers out of range, ``max_tokens`` over the server's cap), an unknown route 404, a
wrong method 405, no length 411, a body too large 413, a body that never arrives 408; a failure
of the model gets 500 (which OpenAI clients retry) and reaches only the request that caused it.

One request never hurts another: requests are validated before they join a batch, and when a
batched model call fails, each of its requests is retried alone, so only the culprit gets the 500.

Why micro-batching: HTTP clients send one prompt per request, but a local model is fast only when
it sees a batch. Requests are queued; one worker thread waits ``batch_window_s`` after the first
arrival (or until ``max_batch`` prompts), groups the queued prompts by decoding parameters and makes
one ``llm.generate`` call per group. Only that thread calls the model, so a backend need not be
thread-safe; prompts that arrive while the model is busy form the next batch.
"""

from __future__ import annotations

import itertools
import json
import logging
import queue
import select
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from reactlab.types import LLM, Completion, GenParams, Prompt, StreamingLLM

log = logging.getLogger("reactlab.serve")

MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_N = 16
MAX_TOKENS_CAP = 4096
"""Default cap on ``max_tokens`` (``serve(max_tokens_cap=...)``): a request for a billion tokens
would hold the model for hours."""
BODY_TIMEOUT_S = 10.0
"""How long a client may take to send its request (a Content-Length longer than the body sent)."""
SEED_MAX = 2**63 - 1
REQUEST_TIMEOUT_S = 600.0
"""Default per-request time limit of ``serve``: past it the request is cancelled (504)."""


class BadRequest(ValueError):
    """A request the server refuses with HTTP 400; the message goes back to the client."""


@dataclass
class _Item:
    prompt: Prompt
    params: GenParams
    future: Future = field(default_factory=Future)
    cancelled: threading.Event = field(default_factory=threading.Event)


class ClientGone(Exception):
    """The client of a request disconnected before its completion was ready."""


class RequestTimeout(Exception):
    """A request ran past the server's per-request time limit (it was cancelled)."""


def _params_key(p: GenParams) -> tuple:
    return (p.max_new_tokens, p.temperature, p.top_p, tuple(p.stop), p.seed)


class MicroBatcher:
    """Feeds prompts from many request threads to the model from one worker thread.

    ``submit(prompts, params, alive)`` blocks until all its completions are back and returns them
    in order. With a streaming model (the local HF engine) each prompt joins the running batch at the
    next decoding step (continuous batching: a short request is not held behind a long one), and a
    prompt whose client went away (``alive()`` false) is cancelled there. With any other model,
    prompts queued within ``batch_window_s`` (up to ``max_batch``) form one ``generate`` call per
    decoding parameters. A failed model call reaches only the request that caused it: a failed
    batch is retried request by request.
    """

    def __init__(self, llm: LLM, batch_window_s: float = 0.015, max_batch: int = 32):
        self.llm = llm
        self.batch_window_s = batch_window_s
        self.max_batch = max_batch
        self._queue: queue.Queue[_Item | None] = queue.Queue()
        self._closed = False
        stream = isinstance(llm, StreamingLLM) and hasattr(llm, "cancel")
        self._thread = threading.Thread(target=self._stream_loop if stream else self._loop, name="reactlab-batcher",
                                        daemon=True)
        self._thread.start()

    def submit(self, prompts: list[Prompt], params: GenParams, alive: Callable[[], bool] | None = None,
               timeout_s: float | None = None) -> list[Completion]:
        """The completions of ``prompts``, in order. Raises ``ClientGone`` once ``alive()`` is false
        and ``RequestTimeout`` after ``timeout_s``; the request's prompts are cancelled then."""
        if self._closed:
            raise RuntimeError("server is shutting down")
        items = [_Item(p, params) for p in prompts]
        for item in items:
            self._queue.put(item)
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        out = []
        for item in items:
            while True:
                try:
                    out.append(item.future.result(timeout=0.2))
                    break
                except FutureTimeout:
                    gone = alive is not None and not alive()
                    late = deadline is not None and time.monotonic() > deadline
                    if gone or late:
                        for it in items:
                            it.cancelled.set()
                        raise (ClientGone() if gone else RequestTimeout()) from None
        return out

    def close(self) -> None:
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _collect(self) -> tuple[list[_Item], bool]:
        """Wait for one item, then gather more for ``batch_window_s``; ``True`` means stop."""
        first = self._queue.get()
        if first is None:
            return [], True
        batch = [first]
        deadline = time.monotonic() + self.batch_window_s
        while len(batch) < self.max_batch:
            try:
                item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    def _loop(self) -> None:
        stop = False
        while not stop:
            batch, stop = self._collect()
            groups: dict[tuple, list[_Item]] = {}
            for item in batch:
                if not item.cancelled.is_set():
                    groups.setdefault(_params_key(item.params), []).append(item)
            for items in groups.values():
                self._run(items)
        self._fail_queued()

    def _stream_loop(self) -> None:
        llm: Any = self.llm
        pending: dict[int, _Item] = {}
        keys = itertools.count()
        stop = False
        while not stop or pending:
            while True:  # take every queued prompt; wait for one only when there is nothing to do
                try:
                    item = self._queue.get(block=not pending and not stop)
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    continue
                if stop:
                    item.future.set_exception(RuntimeError("server is shutting down"))
                    continue
                key = next(keys)
                try:
                    llm.submit(key, item.prompt, item.params)
                except Exception as e:  # a prompt the model refuses: its request alone fails
                    item.future.set_exception(e)
                    continue
                pending[key] = item
            for key, item in list(pending.items()):
                if item.cancelled.is_set() or stop:  # the client left, or the server is stopping
                    llm.cancel(key)
                    del pending[key]
                    if not item.future.done():
                        item.future.set_exception(ClientGone() if item.cancelled.is_set() else
                                                  RuntimeError("server is shutting down"))
            if not pending:
                continue
            try:
                done = llm.poll_once() if hasattr(llm, "poll_once") else llm.poll()
            except Exception as e:  # the engine's state is unknown now: fail what it held
                log.exception("the model failed with %d requests in flight", len(pending))
                for key, item in pending.items():
                    llm.cancel(key)
                    item.future.set_exception(e)
                pending.clear()
                continue
            for key, comp in done:
                item = pending.pop(key, None)
                if item is not None:
                    item.future.set_result(comp)
        self._fail_queued()

    def _fail_queued(self) -> None:
        """Anything still queued after close() would wait forever: fail it."""
        while True:
            try:
                left = self._queue.get_nowait()
            except queue.Empty:
                break
            if left is not None:
                left.future.set_exception(RuntimeError("server is shutting down"))

    def _run(self, items: list[_Item]) -> None:
        try:
            outs = self._generate(items)
        except Exception:  # one bad row must not fail the others: retry each alone
            if len(items) > 1:
                log.warning("generate failed for a batch of %d; retrying each request alone", len(items))
                for it in items:
                    self._run([it])
                return
            log.exception("generate failed for a request")
            items[0].future.set_exception(sys.exc_info()[1] or RuntimeError("generate failed"))
            return
        log.debug("served a batch of %d", len(items))
        for it, out in zip(items, outs, strict=True):
            it.future.set_result(out)

    def _generate(self, items: list[_Item]) -> list[Completion]:
        outs = self.llm.generate([it.prompt for it in items], items[0].params)
        if len(outs) != len(items):
            raise RuntimeError(f"LLM returned {len(outs)} completions for {len(items)} prompts")
        return outs


# --- request parsing ----------------------------------------------------------------------------


def _get(body: dict[str, Any], key: str, types: type | tuple[type, ...], default: Any) -> Any:
    value = body.get(key)
    if value is None:
        return default
    allowed = types if isinstance(types, tuple) else (types,)
    # bool is an int in Python, but `"max_tokens": true` is a client bug worth reporting.
    if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
        names = " or ".join(t.__name__ for t in allowed)
        raise BadRequest(f"'{key}' has the wrong type: expected {names}, got {type(value).__name__}")
    return value


def parse_params(body: dict[str, Any], max_tokens_cap: int = MAX_TOKENS_CAP) -> tuple[GenParams, int]:
    """``GenParams`` and ``n`` from an OpenAI request body; raises ``BadRequest``."""
    d = GenParams()
    max_tokens = _get(body, "max_tokens", int, None)
    if max_tokens is None:
        max_tokens = _get(body, "max_completion_tokens", int, d.max_new_tokens)
    if max_tokens < 1:
        raise BadRequest("'max_tokens' must be >= 1")
    if max_tokens > max_tokens_cap:
        raise BadRequest(f"'max_tokens' is {max_tokens}; this server generates at most {max_tokens_cap} tokens")
    temperature = float(_get(body, "temperature", (int, float), d.temperature))
    top_p = float(_get(body, "top_p", (int, float), d.top_p))
    if not 0 <= temperature <= 2 or not 0 < top_p <= 1:
        raise BadRequest("'temperature' must be in [0, 2] and 'top_p' in (0, 1]")
    stop = _get(body, "stop", (str, list), [])
    stop = [stop] if isinstance(stop, str) else stop
    if not all(isinstance(s, str) for s in stop):
        raise BadRequest("'stop' must be a string or a list of strings")
    seed = _get(body, "seed", int, None)
    if seed is not None and not 0 <= seed <= SEED_MAX:
        raise BadRequest(f"'seed' must be in [0, {SEED_MAX}]")
    n = _get(body, "n", int, 1)
    if not 1 <= n <= MAX_N:
        raise BadRequest(f"'n' must be between 1 and {MAX_N}")
    if body.get("stream"):
        raise BadRequest("streaming is not supported by this server; send 'stream': false")
    return GenParams(max_new_tokens=max_tokens, temperature=temperature, top_p=top_p, stop=stop, seed=seed), n


def parse_messages(body: dict[str, Any]) -> list[dict[str, str]]:
    """Chat messages with string contents (text parts of a content list are joined)."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty list of {role, content} objects")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise BadRequest(f"messages[{i}] must be an object with a string 'role'")
        content = m.get("content")
        if isinstance(content, list):  # [{"type": "text", "text": ...}, ...]
            parts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
            if len(parts) != len(content) or not all(isinstance(t, str) for t in parts):
                raise BadRequest(f"messages[{i}].content: only text parts are supported")
            content = "".join(str(t) for t in parts)
        if not isinstance(content, str):
            raise BadRequest(f"messages[{i}].content must be a string")
        _check_text(content, f"messages[{i}].content")
        out.append({"role": m["role"], "content": content})
    if not any(m["content"] for m in out):
        raise BadRequest("'messages' hold no text")
    return out


def _check_text(text: str, where: str) -> None:
    """A prompt must be valid Unicode (a lone surrogate cannot be tokenized)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise BadRequest(f"{where}: not valid Unicode at character {e.start} ({e.reason})") from None


def parse_prompts(body: dict[str, Any]) -> list[str]:
    prompt = body.get("prompt")
    prompts = [prompt] if isinstance(prompt, str) else prompt
    if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
        raise BadRequest(
            "'prompt' must be a string or a non-empty list of strings (token ids are not supported)"
        )
    for i, p in enumerate(prompts):
        if not p:
            raise BadRequest(f"'prompt'{f'[{i}]' if len(prompts) > 1 else ''} is empty: there is nothing to continue")
        _check_text(p, f"'prompt'[{i}]")
    return prompts


def _usage_json(outs: list[Completion]) -> dict[str, Any]:
    p = sum(c.usage.prompt_tokens for c in outs)
    c_ = sum(c.usage.completion_tokens for c in outs)
    cached = sum(c.usage.cached_tokens for c in outs)
    return {
        "prompt_tokens": p,
        "completion_tokens": c_,
        "total_tokens": p + c_,
        "prompt_tokens_details": {"cached_tokens": cached},
    }


# --- HTTP ---------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    server: OpenAIServer
    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse connections
    timeout = BODY_TIMEOUT_S  # socket timeout: a client that stops sending is let go

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        log.debug("%s " + format, self.address_string(), *args)

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
        self._send(status, {"error": {"message": message, "type": kind, "param": None, "code": None}})

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The stdlib's own errors (a malformed request line, an unknown method) as JSON too."""
        self.close_connection = True
        try:
            self._error(code, message or explain or f"HTTP {code}")
        except OSError:
            pass

    def _client_alive(self) -> bool:
        """False once the client has closed its end (a readable socket with nothing to read)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return not readable or self.connection.recv(1, socket.MSG_PEEK) != b""
        except OSError:
            return False

    def _method_not_allowed(self) -> None:
        self.close_connection = True
        self._error(405, f"{self.command} is not allowed here: use GET /v1/models or POST /v1/completions, "
                         "/v1/chat/completions")

    do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _method_not_allowed

    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/v1/models":
            model = {
                "id": self.server.model_name,
                "object": "model",
                "created": self.server.created,
                "owned_by": "reactlab",
            }
            self._send(200, {"object": "list", "data": [model]})
        elif self.path.rstrip("/") in ("", "/health"):
            self._send(200, {"status": "ok", "model": self.server.model_name})
        else:
            self._error(404, f"no route GET {self.path}")

    def do_POST(self) -> None:
        path = self.path.rstrip("/")
        if path not in ("/v1/completions", "/v1/chat/completions"):
            self.close_connection = True  # its body stays unread: never parse it as a request
            self._error(404, f"no route POST {self.path}")
            return
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self.close_connection = True
            self._error(411, "a Content-Length header is required")
            return
        if int(length) > MAX_BODY_BYTES:
            self.close_connection = True  # the unread body would be parsed as the next request
            self._error(413, f"request body over {MAX_BODY_BYTES} bytes")
            return
        try:
            raw = self.rfile.read(int(length))
        except TimeoutError:
            self.close_connection = True
            self._error(408, f"the request body did not arrive within {BODY_TIMEOUT_S:g} s")
            return
        if len(raw) < int(length):
            self.close_connection = True
            return  # the client hung up mid-body: nobody to answer
        try:
            body = json.loads(raw.decode("utf-8"))
            if not isinstance(body, dict):
                raise BadRequest("the request body must be a JSON object")
            params, n = parse_params(body, self.server.max_tokens_cap)
            chat = path == "/v1/chat/completions"
            prompts: list[Prompt] = [parse_messages(body)] if chat else list(parse_prompts(body))
        except json.JSONDecodeError as e:
            self._error(400, f"the request body is not valid JSON: {e}")
            return
        except UnicodeDecodeError as e:
            self._error(400, f"the request body is not UTF-8 ({e.reason} at byte {e.start})")
            return
        except BadRequest as e:
            self._error(400, str(e))
            return
        try:
            outs = self.server.batcher.submit([p for p in prompts for _ in range(n)], params, self._client_alive,
                                              self.server.request_timeout_s)
        except RequestTimeout:
            self._error(504, f"the request took longer than {self.server.request_timeout_s:g} s and was cancelled",
                        "server_error")
            return
        except ClientGone:
            self.close_connection = True
            log.info("client of %s left; its generation was cancelled", self.path)
            return
        except Exception as e:
            self._error(500, f"the model failed: {type(e).__name__}: {e}", "server_error")
            return
        failed = [c for c in outs if c.finish_reason == "error"]
        if failed:
            self._error(500, f"the model failed: {failed[0].error}", "server_error")
            return
        self._send(200, self._response(chat, outs))

    def _response(self, chat: bool, outs: list[Completion]) -> dict[str, Any]:
        choices = []
        for i, c in enumerate(outs):
            choice: dict[str, Any] = {"index": i, "finish_reason": c.finish_reason, "stop_reason": c.stop}
            if chat:
                choice["message"] = {"role": "assistant", "content": c.text}
            else:
                choice.update(text=c.text, logprobs=None)
            choices.append(choice)
        return {
            "id": ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24],
            "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()),
            "model": self.server.model_name,
            "choices": choices,
            "usage": _usage_json(outs),
        }


class OpenAIServer(ThreadingHTTPServer):
    """The HTTP server ``serve`` returns; ``url`` is its base (``http://host:port``, add ``/v1``)."""

    daemon_threads = True  # a client holding a keep-alive connection must not block shutdown

    def __init__(
        self, llm: LLM, host: str, port: int, model_name: str, batch_window_s: float, max_batch: int,
        max_tokens_cap: int = MAX_TOKENS_CAP, request_timeout_s: float | None = REQUEST_TIMEOUT_S,
    ):
        super().__init__((host, port), _Handler)
        self.llm = llm
        self.model_name = model_name
        self.max_tokens_cap = max_tokens_cap
        self.request_timeout_s = request_timeout_s
        self.created = int(time.time())
        self.batcher = MicroBatcher(llm, batch_window_s, max_batch)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        address, port = self.server_address[:2]
        host = address.decode() if isinstance(address, bytes) else str(address)
        host = "127.0.0.1" if host in ("0.0.0.0", "") else host
        return f"http://{host}:{port}"

    def start(self) -> OpenAIServer:
        """Serve in a daemon thread (``serve`` already did this)."""
        # A short poll interval makes shutdown() return quickly (the default waits up to 0.5 s).
        self._thread = threading.Thread(
            target=self.serve_forever, args=(0.05,), name="reactlab-serve", daemon=True
        )
        self._thread.start()
        return self

    def shutdown(self) -> None:
        """Stop serving, stop the batcher and close the socket; safe to call twice."""
        if self._thread is not None:
            super().shutdown()
            self._thread.join()
            self._thread = None
            self.batcher.close()
            self.server_close()

    def wait(self) -> None:
        """Block until ``shutdown`` (from another thread) or Ctrl-C, which shuts down."""
        try:
            while self._thread is not None and self._thread.is_alive():
                self._thread.join(timeout=0.5)  # a timed join lets Ctrl-C through
        except KeyboardInterrupt:
            self.shutdown()

    def __enter__(self) -> OpenAIServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


def serve(
    llm: LLM,
    host: str = "127.0.0.1",
    port: int = 0,
    model_name: str | None = None,
    batch_window_s: float = 0.015,
    max_batch: int = 32,
    max_tokens_cap: int = MAX_TOKENS_CAP,
    request_timeout_s: float | None = REQUEST_TIMEOUT_S,
) -> OpenAIServer:
    """Serve ``llm`` over the OpenAI API in a background thread; ``port=0`` picks a free port.

    ``model_name`` (default ``llm.name``) is what ``/v1/models`` lists and responses echo; the
    ``model`` field of requests is ignored. ``max_tokens_cap``: the most tokens one request may ask
    for (more is a 400); ``request_timeout_s``: a request still unanswered then is cancelled and gets
    504 (None: no limit). Use as ``with serve(llm) as server: ...`` or call ``server.shutdown()``.
    """
    server = OpenAIServer(
        llm, host, port, model_name or str(getattr(llm, "name", "reactlab")), batch_window_s, max_batch,
        max_tokens_cap, request_timeout_s,
    )
    return server.start()


def main_serve(
    model_spec: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    model_name: str | None = None,
    server_options: dict[str, Any] | None = None,
    **llm_options: Any,
) -> None:
    """Build ``make_llm(model_spec, **llm_options)`` and serve it until Ctrl-C or SIGTERM, then shut
    down cleanly and return (for the CLI: exit 0): requests in flight on a streaming model are
    cancelled and answered with an error, a batch in progress on another model finishes first.

    Prints one line with the URL to stderr; ``model_name`` defaults to ``model_spec``.
    """
    import signal

    from reactlab.llm import make_llm

    llm = make_llm(model_spec, **llm_options)
    server = serve(llm, host=host, port=port, model_name=model_name or model_spec, **(server_options or {}))
    print(f"reactlab: serving {model_spec} at {server.url}/v1 (Ctrl-C to stop)", file=sys.stderr, flush=True)

    def _terminate(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt  # the same orderly path as Ctrl-C

    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        server.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.shutdown()
