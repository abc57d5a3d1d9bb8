"""A scripted LLM: replays canned completions, for tests, docs and demos.

``ScriptedLLM`` behaves like a real backend as far as its callers can tell: one completion per
prompt, in order; ``params.stop`` cuts the text at the earliest stop string (``Completion.stop``
records which); ``params.max_new_tokens`` truncates with ``finish_reason="length"``; usage is
counted in whitespace tokens. It is deterministic and thread-safe.

Stop strings are cut by ``reactlab.llm.stops``, as every backend cuts them. No production module
imports this one: it is the test double.

A script entry is a string (the model's text, ``<tool_call>`` blocks included for a local model in
the tools style) or an API tool reply, ``{"content": str | None, "tool_calls": [...]}`` (OpenAI
shape): its content becomes ``text`` and its calls ``Completion.tool_calls``, as ``OpenAILLM``
returns them.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from os import PathLike
from pathlib import Path
from typing import Any, Union

from reactlab.llm.stops import cut_at_stop
from reactlab.types import Completion, FinishReason, GenParams, Prompt, Usage, prompt_text

Reply = Union[str, Mapping[str, Any]]
"""A script entry: the model's text, or an API tool reply ``{"content", "tool_calls"}``."""

ScriptSource = Union[Sequence[Reply], Mapping[str, Reply], Callable[[Prompt], Reply], str, PathLike]


class ScriptExhausted(ValueError):
    """The script has fewer completions left than the batch asked for (the script is the user's
    input: a ``ValueError``, reported as one line by the commands)."""


def count_tokens(text: str) -> int:
    """A rough token count: whitespace-separated words.

    >>> count_tokens("Thought 1: I need to search")
    6
    """
    return len(text.split())


def finish(text: str, prompt: Prompt, params: GenParams, latency_s: float = 0.0) -> Completion:
    """Turn a raw continuation into a ``Completion`` as a real decoder would have produced it.

    Generation stops at whichever comes first: a stop string or ``max_new_tokens`` (whitespace)
    tokens; the latter gives ``finish_reason="length"`` and keeps the original spacing.

    >>> c = finish("a b c\\nObservation", "q", GenParams(max_new_tokens=2, stop=["\\nObservation"]))
    >>> (c.text, c.stop, c.finish_reason)
    ('a b', None, 'length')
    """
    text, stop = cut_at_stop(text, params.stop)
    reason: FinishReason = "stop"
    words = list(re.finditer(r"\S+", text))
    if len(words) > params.max_new_tokens:
        text = text[: words[params.max_new_tokens - 1].end()] if params.max_new_tokens > 0 else ""
        stop, reason = None, "length"
    usage = Usage(prompt_tokens=count_tokens(prompt_text(prompt)), completion_tokens=count_tokens(text))
    return Completion(text=text, stop=stop, finish_reason=reason, usage=usage, latency_s=latency_s)


def reply_problem(reply: object) -> str | None:
    """Why ``reply`` is not a script entry (None: it is one).

    >>> reply_problem({"content": None, "tool_calls": [{"function": {"name": "finish"}}]}) is None
    True
    >>> reply_problem(3)
    'a script entry is a string or {"content", "tool_calls"}, not int'
    """
    if isinstance(reply, str):
        return None
    if not isinstance(reply, Mapping):
        return f'a script entry is a string or {{"content", "tool_calls"}}, not {type(reply).__name__}'
    extra = sorted(set(reply) - {"role", "content", "tool_calls"})
    if extra or not isinstance(reply.get("tool_calls"), list):
        return f'a tool reply is {{"content", "tool_calls": [...]}}; got the keys {sorted(reply)}'
    if not isinstance(reply.get("content") or "", str):
        return "a tool reply's content is a string or null"
    return None


def _reply_completion(reply: Reply, prompt: Prompt, params: GenParams) -> Completion:
    """A script entry as a ``Completion``: text through ``finish``; a tool reply's calls kept apart
    (counted as tokens of their JSON), as an API returns them."""
    if isinstance(reply, str):
        return finish(reply, prompt, params)
    c = finish(str(reply.get("content") or ""), prompt, params)
    c.tool_calls = [dict(call) for call in reply["tool_calls"]]
    c.usage.completion_tokens += count_tokens(json.dumps(c.tool_calls))
    return c


def load_script(path: str | PathLike) -> list[Reply] | dict[str, Reply]:
    """Read a script file: ``*.jsonl`` holds one string (or ``{"text": ...}`` object, or tool reply)
    per line; any other name holds a JSON list of entries or a JSON object ``{substring: entry}``."""
    p = Path(path)
    items: list | dict
    if p.suffix != ".jsonl":
        try:
            items = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"{p}: not JSON ({e}); name JSONL files *.jsonl") from None
        if not isinstance(items, (list, dict)):
            raise ValueError(f"{p}: a script is a JSON list or object, not {type(items).__name__}")
    else:
        from reactlab.io import iter_jsonl

        items = [row["text"] if isinstance(row, dict) and "text" in row else row for _, row in iter_jsonl(p)]
    if isinstance(items, dict):
        bad = [k for k, v in items.items() if reply_problem(v)]
    else:
        bad = [i for i, v in enumerate(items) if reply_problem(v)]
    if bad:
        raise ValueError(f"{p}: script entries must be strings or tool replies "
                         f'({{"content", "tool_calls"}}); bad entries: {bad[:5]}')
    return items


class ScriptedLLM:
    """Replays canned completions; see the module docstring for what it imitates.

    ``source`` is one of:

    - a list of entries (strings or tool replies), popped in order, one per prompt across all
      ``generate`` calls;
    - a mapping ``{substring: entry}``: each prompt gets the entry of the first key (in insertion
      order) found in its text; never runs out;
    - a callable ``(prompt) -> entry``;
    - a path (``str`` or ``PathLike``) to a JSON list / JSON object / JSONL file (see ``load_script``).

    A list script that cannot serve a whole batch raises ``ScriptExhausted`` without consuming
    anything. ``calls`` records every batch of prompts seen, for assertions in tests.

    >>> llm = ScriptedLLM(["Thought: x\\nAction: finish[a]\\nObservation: done", "b"])
    >>> [c.text for c in llm.generate(["q1", "q2"], GenParams(stop=["\\nObservation"]))]
    ['Thought: x\\nAction: finish[a]', 'b']
    """

    def __init__(self, source: ScriptSource, name: str = "scripted"):
        self.name = name
        self._fn: Callable[[Prompt], Reply] | None = None
        self._mapping: dict[str, Reply] | None = None
        self._queue: list[Reply] = []
        self._used = 0
        if isinstance(source, (str, PathLike)):
            source = load_script(source)
        if callable(source):
            self._fn = source
        elif isinstance(source, Mapping):
            self._mapping = dict(source)
        else:
            self._queue = list(source)
            bad = [i for i, v in enumerate(self._queue) if reply_problem(v)]
            if bad:
                raise TypeError(f"ScriptedLLM script entries must be strings or tool replies; bad indices: {bad[:5]}")
        self.calls: list[list[Prompt]] = []
        self._lock = threading.Lock()

    @property
    def remaining(self) -> int | None:
        """Completions left in a list script (``None`` for mapping and callable scripts)."""
        return len(self._queue) - self._used if self._fn is None and self._mapping is None else None

    def _lookup(self, prompt: Prompt) -> Reply:
        assert self._mapping is not None
        text = prompt_text(prompt)
        for key, completion in self._mapping.items():
            if key in text:
                return completion
        tail = text[-200:]
        raise ScriptExhausted(
            f"ScriptedLLM {self.name!r}: no script key occurs in the prompt (keys: "
            f"{list(self._mapping)[:5]}); prompt ends with {tail!r}"
        )

    def generate(self, prompts: Sequence[Prompt], params: GenParams) -> list[Completion]:
        """One completion per prompt, in order (see the class docstring for where text comes from).
        With ``params.n > 1`` each prompt takes ``n`` script entries, its ``Completion.samples``."""
        n = max(1, params.n)
        prompts = list(prompts)
        rows = [p for p in prompts for _ in range(n)]  # each prompt's n samples, in order
        with self._lock:
            if self._fn is not None:
                raw = [self._fn(p) for p in rows]
            elif self._mapping is not None:
                raw = [self._lookup(p) for p in rows]
            else:
                left = len(self._queue) - self._used
                if left < len(rows):
                    raise ScriptExhausted(
                        f"ScriptedLLM {self.name!r} ran out: asked for {len(rows)} completion(s), "
                        f"{left} left of {len(self._queue)} (the script is too short for this run)"
                    )
                raw = self._queue[self._used : self._used + len(rows)]
                self._used += len(rows)
            self.calls.append(prompts)
        for i, r in enumerate(raw):
            problem = reply_problem(r)
            if problem:
                raise TypeError(f"ScriptedLLM {self.name!r}: prompt {i // n}: {problem}")
        flat = [_reply_completion(r, p, params) for r, p in zip(raw, rows, strict=True)]
        if n == 1:
            return flat
        return [replace(flat[i], samples=flat[i : i + n]) for i in range(0, len(flat), n)]

    def __repr__(self) -> str:
        kind = (
            "callable"
            if self._fn
            else "mapping"
            if self._mapping is not None
            else f"{len(self._queue)} completions"
        )
        return f"ScriptedLLM(name={self.name!r}, {kind})"
