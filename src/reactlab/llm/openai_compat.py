"""An OpenAI-compatible HTTP backend: OpenAI, DeepSeek, DashScope, vLLM, Ollama, llama.cpp servers.

One request per prompt from a thread pool; a row that fails comes back as an error completion and
never costs the others. Retryable failures (429, 408, 409, 5xx, timeouts, bad 200s) are retried
with jittered exponential backoff honouring ``Retry-After``. The API key is kept in a wrapper
whose ``repr`` is ``***`` and scrubbed from every message this module writes.
"""

from __future__ import annotations

import email.utils
import json
import logging
import os
import random
import threading
import time
import traceback
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import httpx

from reactlab.llm.stops import cut_at_stop
from reactlab.types import Completion, FinishReason, GenParams, Prompt, ToolChat, Usage

log = logging.getLogger("reactlab.llm.openai")

DEFAULT_BASE_URL = "https://api.openai.com/v1"
MAX_API_STOPS = 4  # OpenAI (and servers copying it) reject longer stop lists
RETRY_STATUS = {408, 409, 429}  # plus every 5xx
MAX_ERROR_CHARS = 500


class _Secret:
    """Holds a string that must never be printed; ``repr``/``str`` show ``***``."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "***" if self._value else "''"

    __str__ = __repr__


class _RowError(Exception):
    """One attempt failed; ``retry`` says whether another attempt may succeed."""

    def __init__(self, message: str, retry: bool, wait_s: float | None = None):
        super().__init__(message)
        self.retry = retry
        self.wait_s = wait_s  # the server's Retry-After, when it sent one


def parse_retry_after(headers: httpx.Headers) -> float | None:
    """Seconds to wait according to ``retry-after-ms`` (OpenAI) or ``Retry-After`` (seconds or an
    HTTP date); ``None`` when absent or unreadable."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _server_message(resp: httpx.Response) -> str:
    """The server's error message (OpenAI's ``{"error": {"message": ...}}`` or the raw body)."""
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:MAX_ERROR_CHARS]
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return err["message"][:MAX_ERROR_CHARS]
        if isinstance(err, str):
            return err[:MAX_ERROR_CHARS]
    return json.dumps(body)[:MAX_ERROR_CHARS]


def _usage(body: dict[str, Any]) -> Usage:
    """Usage from a response, reading OpenAI's ``prompt_tokens_details.cached_tokens`` and
    DeepSeek's ``prompt_cache_hit_tokens``; missing or unreadable fields count as 0.

    >>> _usage({"usage": {"prompt_tokens": 5, "completion_tokens": 2, "prompt_cache_hit_tokens": 4}})
    Usage(prompt_tokens=5, completion_tokens=2, cached_tokens=4)
    """
    u = body.get("usage")
    if not isinstance(u, dict):
        return Usage()
    details = u.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    if cached is None:
        cached = u.get("prompt_cache_hit_tokens")
    try:
        return Usage(int(u.get("prompt_tokens") or 0), int(u.get("completion_tokens") or 0), int(cached or 0))
    except (TypeError, ValueError):  # odd usage must not fail a good completion
        return Usage()


def _api_message(message: dict[str, Any]) -> dict[str, Any]:
    """A chat message as the API takes it: a ``tool`` turn keeps only the fields the API documents
    for it (role, content, ``tool_call_id``), not the ``name`` some chat templates read.

    >>> _api_message({"role": "tool", "tool_call_id": "c1", "name": "search", "content": "X is..."})
    {'role': 'tool', 'content': 'X is...', 'tool_call_id': 'c1'}
    """
    if message.get("role") != "tool":
        return dict(message)
    return {"role": "tool", "content": message.get("content") or "", "tool_call_id": message.get("tool_call_id", "")}


class OpenAILLM:
    """A model behind an OpenAI-compatible API; implements ``reactlab.types.LLM``.

    - ``base_url`` defaults to ``$OPENAI_BASE_URL`` or ``https://api.openai.com/v1``; ``api_key`` to
      ``$OPENAI_API_KEY`` (no ``Authorization`` header when neither is set: local servers).
    - ``mode="auto"`` sends chat-message prompts to ``/chat/completions`` and text prompts to
      ``/completions``; ``"chat"`` sends a text prompt as one user message; ``"completion"``
      accepts only text prompts.
    - ``params.stop``: the first 4 go to the API; the text is also cut client-side at all of them.
      ``Completion.stop`` is known when the server reports it (vLLM's and reactlab's ``stop_reason``)
      or the cut happened here; otherwise ``None``.
    - ``latency_s`` is the row's wall time including retries.
    - ``max_retries`` retries after the first attempt; backoff before retry ``k`` (0-based) is
      uniform in ``[0, min(backoff_max, backoff_base * 2**k)]`` or the server's ``Retry-After``
      capped at ``backoff_max``. ``extra_body`` is merged into every request (e.g. vendor options).
    - A ``ToolChat`` prompt sends its ``tools`` with ``tool_choice`` (``auto`` or ``required``); the
      reply's ``tool_calls`` come back in ``Completion.tool_calls`` (OpenAI shape), its content in
      ``text``. Not streamed.
    """

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        mode: str = "auto",
        concurrency: int = 8,
        max_retries: int = 6,
        timeout: float = 60.0,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        name: str | None = None,
        extra_body: dict[str, Any] | None = None,
        tool_choice: str = "auto",
    ):
        if mode not in ("auto", "chat", "completion"):
            raise ValueError(f"mode must be 'auto', 'chat' or 'completion', not {mode!r}")
        if tool_choice not in ("auto", "required"):
            raise ValueError(f"tool_choice must be 'auto' or 'required', not {tool_choice!r}")
        if concurrency < 1 or max_retries < 0:
            raise ValueError("concurrency must be >= 1 and max_retries >= 0")
        self.model = model
        self.name = name or f"openai:{model}"
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        self._api_key = _Secret(api_key if api_key is not None else os.environ.get("OPENAI_API_KEY", ""))
        self.mode = mode
        self.concurrency = concurrency
        self.max_retries = max_retries
        self.timeout = timeout
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.extra_body = dict(extra_body or {})
        self.tool_choice = tool_choice
        self._client: httpx.Client | None = None  # made on first use: nothing happens in __init__
        self._client_lock = threading.Lock()
        self._rng = random.Random()

    def __repr__(self) -> str:
        return f"OpenAILLM(model={self.model!r}, base_url={self._redact(self.base_url)!r}, mode={self.mode!r}, api_key={self._api_key!r})"

    # --- plumbing ---------------------------------------------------------------------------------

    def _redact(self, text: str) -> str:
        key = self._api_key.get()
        # Short keys ("x", "EMPTY") are placeholders for local servers, and scrubbing them would
        # mangle ordinary words in messages; real keys are long.
        return text.replace(key, "***") if len(key) >= 8 else text

    def _http(self) -> httpx.Client:
        with self._client_lock:
            if self._client is None:
                headers = {"Content-Type": "application/json"}
                if self._api_key.get():
                    headers["Authorization"] = f"Bearer {self._api_key.get()}"
                self._client = httpx.Client(
                    headers=headers,
                    timeout=self.timeout,
                    limits=httpx.Limits(
                        max_connections=self.concurrency, max_keepalive_connections=self.concurrency
                    ),
                )
            return self._client

    def close(self) -> None:
        """Close the HTTP connections (a later ``generate`` opens new ones)."""
        with self._client_lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def __enter__(self) -> OpenAILLM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, prompt: Prompt, params: GenParams) -> tuple[str, dict[str, Any]]:
        """The endpoint path and JSON body for one prompt."""
        chat = not isinstance(prompt, str) or self.mode == "chat"
        if chat and self.mode == "completion":
            raise ValueError(
                f"{self.name}: mode='completion' cannot send chat-message prompts; use mode='auto'"
            )
        body: dict[str, Any] = {"model": self.model}
        if chat:
            body["messages"] = (
                [{"role": "user", "content": prompt}] if isinstance(prompt, str) else [_api_message(m) for m in prompt]
            )
            if isinstance(prompt, ToolChat) and prompt.tools:
                body.update(tools=list(prompt.tools), tool_choice=self.tool_choice)
        else:
            body["prompt"] = prompt
        body.update(max_tokens=params.max_new_tokens, temperature=params.temperature, top_p=params.top_p)
        if params.stop:
            body["stop"] = list(params.stop[:MAX_API_STOPS])
        if params.seed is not None:
            body["seed"] = params.seed
        if params.n > 1:
            body["n"] = params.n
        body.update(self.extra_body)
        return ("/chat/completions" if chat else "/completions"), body

    def _attempt(self, path: str, body: dict[str, Any], params: GenParams) -> Completion:
        """One HTTP round trip; raises ``_RowError`` on any failure."""
        try:
            resp = self._http().post(self.base_url + path, json=body)
        except httpx.TimeoutException as e:
            raise _RowError(f"timeout after {self.timeout}s ({type(e).__name__})", retry=True) from None
        except httpx.TransportError as e:
            raise _RowError(f"connection error: {type(e).__name__}: {e}", retry=True) from None
        status = resp.status_code
        if status != 200:
            retry = status in RETRY_STATUS or status >= 500
            wait = parse_retry_after(resp.headers) if retry else None
            raise _RowError(f"HTTP {status}: {_server_message(resp)}", retry=retry, wait_s=wait)
        try:
            data = resp.json()
            choices = data["choices"]
            texts = [self._choice_text(c, "messages" in body) for c in choices]
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as e:
            # A 200 that is not a completion is usually a proxy or an overloaded server: retry.
            raise _RowError(
                f"malformed response ({type(e).__name__}: {e}): {resp.text[:200]}", retry=True
            ) from None
        n = max(1, params.n)
        if len(texts) < n:
            raise _RowError(f"asked for n={n} samples, the server returned {len(texts)} choice(s) "
                            "(it may not support n > 1)", retry=False)
        comps = [self._completion(t, c, params) for t, c in zip(texts[:n], choices[:n], strict=True)]
        comps[0].usage = _usage(data)  # the request's tokens, counted once
        if n == 1:
            return comps[0]
        return replace(comps[0], samples=comps)

    @staticmethod
    def _choice_text(choice: dict[str, Any], chat: bool) -> str:
        text = (choice.get("message") or {}).get("content") or "" if chat else choice["text"]
        if not isinstance(text, str):
            raise TypeError(f"text is {type(text).__name__}")
        return text

    @staticmethod
    def _completion(text: str, choice: dict[str, Any], params: GenParams) -> Completion:
        """One choice as a ``Completion``, cut at our stop strings client-side; a chat message's
        ``tool_calls`` (a non-empty list) kept as given, for the agent's parser to judge."""
        text, stop = cut_at_stop(text, params.stop)
        reason: FinishReason = "stop" if stop else ("length" if choice.get("finish_reason") == "length" else "stop")
        server_stop = choice.get("stop_reason")
        if stop is None and reason == "stop" and isinstance(server_stop, str) and server_stop in params.stop:
            stop = server_stop
        calls = (choice.get("message") or {}).get("tool_calls")
        return Completion(text=text, stop=stop, finish_reason=reason,
                          tool_calls=calls if isinstance(calls, list) and calls else None)

    def _row(self, i: int, prompt: Prompt, params: GenParams) -> Completion:
        """One prompt with retries; never raises."""
        t0 = time.perf_counter()
        attempts = self.max_retries + 1
        path, body = self._request(prompt, params)  # validated by generate: cannot raise here
        try:
            for k in range(attempts):
                try:
                    c = self._attempt(path, body, params)
                    c.latency_s = time.perf_counter() - t0
                    return c
                except _RowError as e:
                    msg = self._redact(str(e))
                    if not e.retry:
                        err = msg
                        break
                    if k + 1 == attempts:
                        err = f"{msg} (gave up after {attempts} attempts)"
                        break
                    cap = min(self.backoff_max, self.backoff_base * 2**k)
                    wait = (
                        min(e.wait_s, self.backoff_max) if e.wait_s is not None else self._rng.uniform(0, cap)
                    )
                    log.info(
                        "%s row %d: %s; retry %d/%d in %.2fs",
                        self.name,
                        i,
                        msg,
                        k + 1,
                        self.max_retries,
                        wait,
                    )
                    time.sleep(wait)
        except Exception as e:  # a bug here must not lose the other rows' results
            tb = self._redact("".join(traceback.format_exception(type(e), e, e.__traceback__)))
            log.error("%s row %d: unexpected error\n%s", self.name, i, tb)
            err = self._redact(f"internal error: {type(e).__name__}: {e}")
        log.warning("%s row %d failed: %s", self.name, i, err)
        return Completion(text="", finish_reason="error", error=err, latency_s=time.perf_counter() - t0)

    # --- the LLM protocol -------------------------------------------------------------------------

    def generate(self, prompts: Sequence[Prompt], params: GenParams) -> list[Completion]:
        """One completion per prompt, in order; failed rows have ``finish_reason="error"``.

        Raises ``ValueError`` only for a caller's mistake (a chat prompt with ``mode="completion"``),
        checked before any request is sent.
        """
        prompts = list(prompts)
        for p in prompts:
            self._request(p, params)  # validate every row first, so a bad one cannot waste the batch
        if len(prompts) <= 1 or self.concurrency == 1:
            return [self._row(i, p, params) for i, p in enumerate(prompts)]
        with ThreadPoolExecutor(
            max_workers=min(self.concurrency, len(prompts)), thread_name_prefix="openai"
        ) as pool:
            futures = [pool.submit(self._row, i, p, params) for i, p in enumerate(prompts)]
            return [f.result() for f in futures]
