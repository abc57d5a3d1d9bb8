"""The HTTP side of ``reactlab serve``: routes, status codes, ``serve``. Deliberate deviations from
OpenAI: fields left out take ``GenParams``' defaults (greedy, 128 new tokens), and choices carry vLLM's
``stop_reason``. One request never hurts another: requests are validated before they join a batch,
and a failed batched call is retried request by request. The API: docs/export-serving.md; tools and
``--record``: docs/tools.md.
"""

from __future__ import annotations

import json
import logging
import queue
import select
import socket
import sys
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from reactlab.io import MAX_DEPTH, DataError, OutputError, check_json
from reactlab.serve.batcher import ClientGone, MicroBatcher, RequestTimeout, Schedule, ShuttingDown
from reactlab.serve.protocol import (
    BODY_TIMEOUT_S,
    MAX_BODY_BYTES,
    MAX_TOKENS_CAP,
    REQUEST_TIMEOUT_S,
    BadRequest,
    ToolSpec,
    _usage_json,
    calls_before,
    conversation_id,
    has_tool_turns,
    parse_messages,
    parse_params,
    parse_prompts,
    parse_tools,
    stream_prefix,
    tool_reply,
)
from reactlab.serve.record import Recorder
from reactlab.types import LLM, Completion, GenParams, Prompt

log = logging.getLogger("reactlab.serve")


class BadJSON(DataError):
    """A request body nested too deeply or holding text that is not valid Unicode (a 400)."""


class _Chat:
    """What a chat request needs after generation: its tools, the text written for the model at the
    start of its reply (``ToolSpec.prefill``), the id of its first new call, and what is recorded."""

    def __init__(self, body: dict[str, Any], messages: list[dict[str, Any]], spec: ToolSpec, prefill: str,
                 conversation: str | None):
        self.body, self.messages, self.spec, self.prefill = body, messages, spec, prefill
        self.first_id = calls_before(messages) + 1
        self.conversation = conversation

    def message(self, c: Completion) -> tuple[dict[str, Any], str]:
        """The reply's assistant message and finish reason (``tool_calls`` when it holds calls)."""
        text = self.prefill + c.text
        if self.spec.tools or self.prefill:
            msg = tool_reply(text, self.spec, self.first_id)
            if msg is not None:
                return msg, "tool_calls"
        return {"role": "assistant", "content": text}, c.finish_reason


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

    def _model(self, name: str) -> dict[str, Any]:
        return {"id": name, "object": "model", "created": self.server.created, "owned_by": "reactlab"}

    def do_GET(self) -> None:
        path = self.path.rstrip("/")
        if path == "/v1/models":
            self._send(200, {"object": "list", "data": [self._model(m) for m in self.server.model_names]})
        elif path.startswith("/v1/models/"):
            name = urllib.parse.unquote(path[len("/v1/models/"):])
            if name in self.server.model_names:
                self._send(200, self._model(name))
            else:
                self._error(404, f"the model {name!r} does not exist here; this server serves "
                                 f"{', '.join(self.server.model_names)}", "model_not_found")
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
            check_json(body, raw, "the request body", BadJSON)
            if not isinstance(body, dict):
                raise BadRequest("the request body must be a JSON object")
            params, n = parse_params(body, self.server.max_tokens_cap)
            chat = path == "/v1/chat/completions"
            talk: _Chat | None = self._chat(body) if chat else None
            prompts: list[Prompt] = [self._prompt(talk)] if talk else list(parse_prompts(body))
            model = body.get("model")
            if model is not None and model not in self.server.model_names:
                self._error(404, f"the model {model!r} does not exist here; this server serves "
                                 f"{', '.join(self.server.model_names)} (reactlab serve --alias NAME adds a name)",
                            "model_not_found")
                return
        except json.JSONDecodeError as e:
            self._error(400, f"the request body is not valid JSON: {e}")
            return
        except RecursionError:
            self._error(400, f"the request body: JSON nested deeper than {MAX_DEPTH} levels")
            return
        except UnicodeDecodeError as e:
            self._error(400, f"the request body is not UTF-8 ({e.reason} at byte {e.start})")
            return
        except (BadRequest, BadJSON) as e:
            self._error(400, str(e))
            return
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage", False))
            self._stream(talk, [p for p in prompts for _ in range(n)], params, include_usage)
            return
        try:
            outs = self.server.batcher.submit([p for p in prompts for _ in range(n)], params, self._client_alive,
                                              self.server.request_timeout_s)
        except RequestTimeout:
            self._error(504, f"the request took longer than {self.server.request_timeout_s:g} s and was cancelled",
                        "server_error")
            return
        except ShuttingDown as e:
            self._error(503, str(e), "server_error")
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
        try:
            self._record(talk, outs)
        except OutputError as e:
            self._error(500, f"the reply was not recorded: {e}", "server_error")
            return
        self._send(200, self._response(talk, outs))

    def _chat(self, body: dict[str, Any]) -> _Chat:
        """Read a chat request's messages and tools; raises ``BadRequest``."""
        messages = parse_messages(body)
        spec = parse_tools(body)
        conversation = None
        if self.server.recorder is not None:
            conversation = conversation_id(self.headers.get("X-Conversation-Id"), messages)
        return _Chat(body, messages, spec, spec.prefill(), conversation)

    def _prompt(self, talk: _Chat) -> Prompt:
        """The model's prompt: the messages as they are, or, with tools or tool turns, the text of the
        served model's chat template with the tools (``render_tools_prompt``) and the reply's prefill."""
        if not talk.spec.tools and not has_tool_turns(talk.messages):
            return talk.messages  # plain {role, content} strings
        tok = getattr(self.server.llm, "tokenizer", None)
        if tok is None or not getattr(tok, "chat_template", None):
            raise BadRequest(f"tools not supported: the model {self.server.model_name!r} has no local chat template "
                             "to render them with (serve a local model: smollm2, hf:PATH)")
        from reactlab.agents.tools import render_tools_prompt

        try:
            text = render_tools_prompt(tok, talk.messages, talk.spec.tools)
        except Exception as e:  # noqa: BLE001 - the template's own (jinja2) errors
            if type(e).__module__.split(".")[0] != "jinja2":
                raise
            raise BadRequest(f"the model's chat template cannot render these messages: {e}") from None
        return text + talk.prefill

    def _record(self, talk: _Chat | None, outs: list[Completion]) -> None:
        """Append the exchange (one record per choice) when the server records; never any header."""
        recorder = self.server.recorder
        if recorder is None or talk is None or talk.conversation is None:
            return
        for c in outs:
            message, finish = talk.message(c)
            recorder.record(talk.conversation, talk.body, message, finish, _usage_json([c]))

    def _stream(self, talk: _Chat | None, prompts: list[Prompt], params: GenParams, include_usage: bool) -> None:
        """Server-sent events: one chunk per new piece of text per choice as the model writes it (a
        streaming model; otherwise the whole text in one chunk), then each choice's finish reason,
        the usage when asked (``stream_options.include_usage``), and ``[DONE]``. The pieces of a
        choice add up to exactly the text the same request gets without streaming. With tools, text
        is sent up to the first ``<tool_call>``; a reply of calls then ends in one ``delta.tool_calls``
        chunk (each call whole) and ``finish_reason: tool_calls``, any other reply in its remaining text."""
        chat = talk is not None
        prefill = talk.prefill if talk else ""
        cuts = params.stop + (["<tool_call>"] if talk and talk.spec.tools else [])
        events: queue.Queue[tuple[int, str]] = queue.Queue()
        try:
            items = self.server.batcher.enqueue(prompts, params, lambda i, t: events.put((i, t)))
        except ShuttingDown as e:
            self._error(503, str(e), "server_error")
            return
        ident = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        created = int(time.time())

        def chunk(choices: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> None:
            payload: dict[str, Any] = {"id": ident, "object": "chat.completion.chunk" if chat else "text_completion",
                                       "created": created, "model": self.server.model_name, "choices": choices}
            if usage is not None:
                payload["usage"] = usage
            self.wfile.write(b"data: " + json.dumps(payload).encode() + b"\n\n")
            self.wfile.flush()

        def piece(i: int, text: str, finish: str | None = None, stop: str | None = None) -> dict[str, Any]:
            if chat:
                delta = {"content": text} if text or finish is None else {}
                return {"index": i, "delta": delta, "finish_reason": finish}
            return {"index": i, "text": text, "logprobs": None, "finish_reason": finish, "stop_reason": stop}

        self.close_connection = True  # the stream ends when the connection does
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        sent = [""] * len(items)
        deadline = None if self.server.request_timeout_s is None else time.monotonic() + self.server.request_timeout_s
        try:
            if chat:
                chunk([{"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
                       for i in range(len(items))])
            while not all(it.future.done() for it in items):
                try:
                    i, text = events.get(timeout=0.2)
                except queue.Empty:
                    if not self._client_alive() or (deadline is not None and time.monotonic() > deadline):
                        for it in items:
                            it.cancelled.set()
                        return
                    continue
                new = stream_prefix(prefill + text, cuts)
                if new.startswith(sent[i]) and len(new) > len(sent[i]):
                    chunk([piece(i, new[len(sent[i]):])])
                    sent[i] = new
            outs = []
            for i, it in enumerate(items):
                try:
                    c = it.future.result()
                except Exception as e:  # noqa: BLE001 - the client hears it in the stream
                    self.wfile.write(b"data: " + json.dumps({"error": {"message": f"the model failed: {e}",
                                                                        "type": "server_error"}}).encode() + b"\n\n")
                    return
                outs.append(c)
                if talk is None:
                    rest = c.text[len(sent[i]):] if c.text.startswith(sent[i]) else ""
                    chunk([piece(i, rest, c.finish_reason, c.stop)])
                    continue
                message, finish = talk.message(c)
                if message.get("tool_calls"):
                    head = stream_prefix(prefill + c.text, cuts)  # the text before the first call
                    if head.startswith(sent[i]) and len(head) > len(sent[i]):
                        chunk([piece(i, head[len(sent[i]):])])
                    calls = [{"index": k, **call} for k, call in enumerate(message["tool_calls"])]
                    chunk([{"index": i, "delta": {"tool_calls": calls}, "finish_reason": None}])
                    chunk([piece(i, "", finish)])
                    continue
                full = message["content"]
                chunk([piece(i, full[len(sent[i]):] if full.startswith(sent[i]) else "", finish, c.stop)])
            try:
                self._record(talk, outs)
            except OutputError as e:
                self.wfile.write(b"data: " + json.dumps({"error": {"message": f"the reply was not recorded: {e}",
                                                                    "type": "server_error"}}).encode() + b"\n\n")
                return
            if include_usage:
                chunk([], _usage_json(outs))
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
        except OSError:  # the client went away mid-stream
            for it in items:
                it.cancelled.set()

    def _response(self, talk: _Chat | None, outs: list[Completion]) -> dict[str, Any]:
        chat = talk is not None
        choices = []
        for i, c in enumerate(outs):
            choice: dict[str, Any] = {"index": i, "finish_reason": c.finish_reason, "stop_reason": c.stop}
            if talk is not None:
                choice["message"], choice["finish_reason"] = talk.message(c)
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
    request_queue_size = 128  # the listen backlog (the stdlib's 5 resets connections under a burst)

    def __init__(
        self, llm: LLM, host: str, port: int, model_name: str, batch_window_s: float, max_batch: int,
        max_tokens_cap: int = MAX_TOKENS_CAP, request_timeout_s: float | None = REQUEST_TIMEOUT_S,
        aliases: tuple[str, ...] = (), schedule: Schedule | None = None, record: str | None = None,
    ):
        super().__init__((host, port), _Handler)
        self.recorder = Recorder(record) if record is not None else None
        self.llm = llm
        self.model_name = model_name
        self.model_names = [model_name, *(a for a in aliases if a != model_name)]
        self.max_tokens_cap = max_tokens_cap
        self.request_timeout_s = request_timeout_s
        self.created = int(time.time())
        self.batcher = MicroBatcher(llm, batch_window_s, max_batch, schedule)
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
            if self.recorder is not None:
                self.recorder.close()

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
    aliases: tuple[str, ...] = (),
    schedule: Schedule | None = None,
    record: str | None = None,
) -> OpenAIServer:
    """Serve ``llm`` over the OpenAI API in a background thread; ``port=0`` picks a free port.

    ``model_name`` (default ``llm.name``) is what ``/v1/models`` lists and responses echo; the
    ``model`` field of a request must be it or one of ``aliases`` (else 404 ``model_not_found``;
    a request without one gets this model). ``max_tokens_cap``: the most tokens one request may ask
    for (more is a 400); ``request_timeout_s``: a request still unanswered then is cancelled and gets
    504 (None: no limit); ``schedule``: which waiting request is admitted next (first come first
    served by default; see ``batcher.Schedule``); ``record``: a directory to append every chat
    exchange to (docs/tools.md). Use as ``with serve(llm) as server: ...`` or call
    ``server.shutdown()``.
    """
    server = OpenAIServer(
        llm, host, port, model_name or str(getattr(llm, "name", "reactlab")), batch_window_s, max_batch,
        max_tokens_cap, request_timeout_s, tuple(aliases), schedule, record,
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
    cancelled and answered 503, a batch in progress on another model finishes first.

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
