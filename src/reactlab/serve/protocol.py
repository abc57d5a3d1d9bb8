"""The OpenAI request format: reading and validating a request body into prompts and decoding
parameters (``BadRequest`` for anything a server must refuse with 400), and usage in responses."""

from __future__ import annotations

from typing import Any

from reactlab.types import Completion, GenParams

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
    _get(body, "stream", bool, False)
    options = _get(body, "stream_options", dict, {})
    if not isinstance(options.get("include_usage", False), bool):
        raise BadRequest("'stream_options.include_usage' must be true or false")
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
        if content is None and m["role"] == "assistant":  # an assistant turn of tool calls only
            content = ""
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


def stream_prefix(text: str, stops: list[str]) -> str:
    r"""What of a completion's text so far can be sent to a streaming client for sure: cut at a stop
    string already there; else without the longest tail that could still grow into one, and without
    a trailing undecoded byte (``\ufffd``), so that the pieces sent always add up to the final text.

    >>> stream_prefix("Thought: go\nObs", ["\nObservation"]), stream_prefix("a\nObservation 1", ["\nObservation"])
    ('Thought: go', 'a')
    >>> stream_prefix("plain text", ["\nObservation"])
    'plain text'
    """
    cuts = [text.index(s) for s in stops if s and s in text]
    if cuts:
        return text[: min(cuts)].rstrip("\ufffd")
    longest = max((len(s) for s in stops if s), default=0)
    for k in range(min(len(text), longest - 1), 0, -1):  # the longest tail that begins a stop string
        if any(s.startswith(text[-k:]) for s in stops if s):
            text = text[:-k]
            break
    return text.rstrip("\ufffd")


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
