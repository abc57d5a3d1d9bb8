"""The OpenAI request format: reading and validating a request body into prompts, decoding
parameters and tools (``BadRequest`` for anything a server must refuse with 400), and the replies'
usage and tool calls."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from reactlab.agents.tools import ParseFailure, ToolAction, parse_tool_calls, reply_thought
from reactlab.types import Completion, GenParams, Tool

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


def parse_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Chat messages with string contents (text parts of a content list are joined); an assistant's
    ``tool_calls`` and a tool message's ``tool_call_id`` / ``name`` are kept."""
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
        msg: dict[str, Any] = {"role": m["role"], "content": content}
        if m["role"] == "assistant" and m.get("tool_calls") is not None:
            msg["tool_calls"] = _check_calls(m["tool_calls"], f"messages[{i}].tool_calls")
        if m["role"] == "tool":
            for key in ("tool_call_id", "name"):
                if m.get(key) is not None:
                    if not isinstance(m[key], str):
                        raise BadRequest(f"messages[{i}].{key} must be a string")
                    msg[key] = m[key]
        out.append(msg)
    if not any(m["content"] or m.get("tool_calls") for m in out):
        raise BadRequest("'messages' hold no text")
    return out


def _check_calls(calls: Any, where: str) -> list[dict[str, Any]]:
    """An assistant's ``tool_calls`` as sent back: a list of ``{id, type, function: {name, arguments}}``."""
    if not isinstance(calls, list):
        raise BadRequest(f"{where} must be a list")
    for k, c in enumerate(calls):
        f = c.get("function") if isinstance(c, dict) else None
        if not isinstance(f, dict) or not isinstance(f.get("name"), str) \
                or not isinstance(f.get("arguments"), (str, dict)):
            raise BadRequest(f"{where}[{k}] must be {{\"type\": \"function\", \"function\": "
                             "{\"name\": STRING, \"arguments\": JSON STRING}}")
    return calls


def has_tool_turns(messages: list[dict[str, Any]]) -> bool:
    """Whether a conversation holds tool calls or tool results (it needs a tool-aware prompt)."""
    return any(m["role"] == "tool" or m.get("tool_calls") for m in messages)


# --- tools -----------------------------------------------------------------------------------------

_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass
class ToolSpec:
    """The tools of a request: ``tools`` as sent, the ``ToolAction`` each is parsed as, the client's
    spelling of each name, and ``choice``: "auto", "none", "required" or a tool's name."""

    tools: list[Tool] = field(default_factory=list)
    actions: list[ToolAction] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)
    choice: str = "none"

    def prefill(self) -> str:
        """The start of the reply written for the model: a call block for "required", the named
        tool's call for a named choice (the model continues from it), nothing otherwise."""
        if self.choice in ("auto", "none"):
            return ""
        if self.choice == "required":
            return '<tool_call>\n{"name": "'
        return "<tool_call>\n" + json.dumps({"name": self.choice})[:-1] + ', "arguments": '


def parse_tools(body: dict[str, Any]) -> ToolSpec:
    """``tools`` and ``tool_choice`` of a request. A tool is ``{"type": "function", "function": {"name",
    "description", "parameters"}}`` whose parameters hold exactly one property: the server reads calls
    with ``agents.tools.parse_tool_calls``, whose tools take one argument (our agents' search, lookup,
    finish). Names match case-insensitively, so two may not differ only in case."""
    tools = _get(body, "tools", list, [])
    spec = ToolSpec(tools=tools)
    for i, t in enumerate(tools):
        f = t.get("function") if isinstance(t, dict) else None
        if not isinstance(f, dict) or t.get("type", "function") != "function":
            raise BadRequest(f"tools[{i}] must be {{\"type\": \"function\", \"function\": {{\"name\", "
                             "\"description\", \"parameters\"}}}}")
        name, desc, params = f.get("name"), f.get("description", ""), f.get("parameters", {})
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise BadRequest(f"tools[{i}].function.name must be 1-64 letters, digits, '_' or '-'")
        if not isinstance(desc, str):
            raise BadRequest(f"tools[{i}].function.description must be a string")
        props = params.get("properties") if isinstance(params, dict) else None
        if not isinstance(params, dict) or params.get("type", "object") != "object" or not isinstance(props, dict):
            raise BadRequest(f"tools[{i}].function.parameters must be a JSON schema "
                             "{\"type\": \"object\", \"properties\": {...}}")
        if len(props) != 1:
            raise BadRequest(f"tools[{i}] ({name}): this server reads calls of tools with one argument; "
                             f"it has {len(props)}")
        try:
            action = ToolAction(name.lower(), desc, next(iter(props)))
        except ValueError:
            raise BadRequest(f"tools[{i}].function.name {name!r}: this server takes tool names of letters, "
                             "digits and '_' not starting with a digit") from None
        if action.name in spec.names:
            raise BadRequest(f"tools[{i}]: a second tool named {name!r} (names match case-insensitively)")
        spec.actions.append(action)
        spec.names[action.name] = name
    choice = body.get("tool_choice")
    if choice is None:
        spec.choice = "auto" if tools else "none"
    elif choice in ("auto", "none", "required"):
        spec.choice = choice
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict) \
            and isinstance(choice["function"].get("name"), str):
        spec.choice = choice["function"]["name"]
        if spec.choice.lower() not in spec.names:
            raise BadRequest(f"'tool_choice' names {spec.choice!r}, which is not in 'tools'")
        spec.choice = spec.names[spec.choice.lower()]
    else:
        raise BadRequest("'tool_choice' must be \"auto\", \"none\", \"required\" or "
                         "{\"type\": \"function\", \"function\": {\"name\": NAME}}")
    if spec.choice != "none" and not tools:
        raise BadRequest(f"'tool_choice' is {choice!r} but the request has no 'tools'")
    return spec


def tool_reply(text: str, spec: ToolSpec, first_id: int = 1) -> dict[str, Any] | None:
    """The assistant message of a reply holding well-formed calls of the request's tools (ids
    ``call_<n>`` from ``first_id``, arguments a JSON string, ``content`` the text outside the calls or
    None), else None: the reply is plain content. ``tool_choice: none`` never gives calls.

    >>> spec = parse_tools({"tools": [{"type": "function", "function": {"name": "search",
    ...     "parameters": {"type": "object", "properties": {"entity": {"type": "string"}}}}}]})
    >>> tool_reply('Go.<tool_call>{"name": "search", "arguments": {"entity": "X"}}</tool_call>', spec, 3)
    {'role': 'assistant', 'content': 'Go.', 'tool_calls': [{'id': 'call_3', 'type': 'function', \
'function': {'name': 'search', 'arguments': '{"entity": "X"}'}}]}
    """
    if spec.choice == "none" or not spec.actions:
        return None
    calls = parse_tool_calls(text, spec.actions, single=False)
    if isinstance(calls, ParseFailure):
        return None
    out = []
    for k, c in enumerate(calls):
        c.name, c.id = spec.names[c.name], f"call_{first_id + k}"
        out.append(c.to_openai())
    return {"role": "assistant", "content": reply_thought(text) or None, "tool_calls": out}


def calls_before(messages: list[dict[str, Any]]) -> int:
    """How many tool calls the conversation's assistant turns made (new ids continue after them)."""
    return sum(len(m.get("tool_calls") or []) for m in messages if m["role"] == "assistant")


def conversation_id(header: str | None, messages: list[dict[str, Any]]) -> str:
    """The conversation an exchange belongs to: the ``X-Conversation-Id`` header when sent, else a
    hash of the first system and first user messages (every turn of one agent's episode resends them).

    >>> conversation_id(None, [{"role": "user", "content": "q"}]) == conversation_id(None, [
    ...     {"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}])
    True
    """
    if header is not None:
        header = header.strip()
        if not 0 < len(header) <= 200 or not header.isprintable():
            raise BadRequest("the X-Conversation-Id header must be 1-200 printable characters")
        return header
    first = {role: next((m["content"] for m in messages if m["role"] == role), "") for role in ("system", "user")}
    return "h-" + hashlib.sha256(json.dumps(first, sort_keys=True).encode()).hexdigest()[:16]


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
