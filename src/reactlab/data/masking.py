"""Loss masks: which tokens of a training row the model learns to produce.

``mask_conversation`` renders a conversation with the tokenizer's chat template and, with
``train_on="assistant"``, trains only the assistant turns and the end-of-turn token that closes them
(the model must learn to stop); role headers are the runtime's, not the model's. A template with
``{% generation %}`` markers decides itself; otherwise each turn's span is found by rendering
prefixes, and a template that is not prefix-stable is refused. ``mask_tool_conversation`` does the
same for tool conversations rendered as ``agents.tools.render_tools_prompt`` renders them: the calls
are the assistant's text (trained), the tool results a user or tool turn (not trained). Nothing here
imports transformers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from reactlab.agents.tools import fallback_messages, native_messages, template_uses_tools
from reactlab.types import Tool

IGNORE = -100
END_OF_TURN = ("<end_of_turn>", "<|im_end|>", "<|eot_id|>", "<|end|>")
"""End-of-turn tokens of common chat templates, looked for besides the tokenizer's ``eos_token``."""
_GEN = re.compile(r"\{%-?\s*generation\s*-?%\}")


def has_generation_markers(template: str | None) -> bool:
    """True when a chat template marks assistant text with ``{% generation %}``.

    >>> has_generation_markers("{%- generation -%}{{ m }}{% endgeneration %}"), has_generation_markers("{{ m }}")
    (True, False)
    """
    return template is not None and _GEN.search(template) is not None


def _render(tokenizer: Any, messages: list[dict[str, Any]], template: str | None, gen_prompt: bool = False,
            tools: list[Tool] | None = None) -> str:
    return tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False,
                                         add_generation_prompt=gen_prompt, tools=tools)


def assistant_spans(tokenizer: Any, messages: list[dict[str, Any]], template: str | None = None,
                    tools: list[Tool] | None = None) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the ``[start, end)`` character span of each assistant turn
    (content + end-of-turn token), by rendering prefixes (see the module docstring)."""
    full = _render(tokenizer, messages, template, tools=tools)
    eots = [t for t in (tokenizer.eos_token, *END_OF_TURN) if t]
    spans: list[tuple[int, int]] = []
    for j, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before = _render(tokenizer, messages[:j], template, gen_prompt=True, tools=tools) if j else ""
        upto = _render(tokenizer, messages[: j + 1], template, tools=tools)
        if not (upto.startswith(before) and full.startswith(upto)):
            raise ValueError(
                f"the chat template is not prefix-stable at message {j} (rendering a conversation's start "
                "differs from the start of its full rendering); give it {% generation %} markers instead"
            )
        start, end = len(before), len(upto)
        cut, eot = max((full.rfind(t, start, end), t) for t in eots) if eots else (-1, "")
        spans.append((start, cut + len(eot) if cut >= 0 else end))
    return full, spans


def mask_spans(tokenizer: Any, text: str, spans: list[tuple[int, int]]) -> dict[str, list[int]]:
    """Tokenize ``text`` (no extra special tokens: the template already holds them) and keep labels
    only on tokens that overlap a character span."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    labels = [
        tok if any(a < e and b > s for s, e in spans) else IGNORE
        for tok, (a, b) in zip(ids, enc["offset_mapping"], strict=True)
    ]
    return {"input_ids": ids, "labels": labels, "attention_mask": [1] * len(ids)}


def mask_conversation(tokenizer: Any, messages: list[dict[str, Any]], train_on: str = "assistant",
                      chat_template: str | None = None, tools: list[Tool] | None = None) -> dict[str, list[int]]:
    """``{"input_ids", "labels", "attention_mask"}`` for one conversation (see the module docstring).

    ``chat_template`` overrides the tokenizer's own; ``tools`` go to the template as they are
    (``mask_tool_conversation`` chooses between them and the fallback). Raises ``ValueError`` for an
    unknown ``train_on``, a conversation without an assistant turn, or a template that cannot be masked.
    """
    if train_on not in ("assistant", "all"):
        raise ValueError(f"train_on must be 'assistant' or 'all', not {train_on!r}")
    template = chat_template or tokenizer.chat_template
    if train_on == "all":
        text = _render(tokenizer, messages, template, tools=tools)
        return mask_spans(tokenizer, text, [(0, len(text))])
    if not any(m["role"] == "assistant" for m in messages):
        raise ValueError("the conversation has no assistant turn: nothing to train on")
    if has_generation_markers(template):
        enc = tokenizer.apply_chat_template(messages, chat_template=template, tokenize=True, return_dict=True,
                                            return_assistant_tokens_mask=True, tools=tools)
        ids, mask = list(enc["input_ids"]), list(enc["assistant_masks"])
        if 1 not in mask:
            raise ValueError("the template's {% generation %} block marked no assistant token")
        return {"input_ids": ids, "labels": [t if k else IGNORE for t, k in zip(ids, mask, strict=True)],
                "attention_mask": [1] * len(ids)}
    text, spans = assistant_spans(tokenizer, messages, template, tools)
    return mask_spans(tokenizer, text, spans)


def mask_tool_conversation(tokenizer: Any, messages: Sequence[Mapping[str, Any]], tools: Sequence[Tool],
                           train_on: str = "assistant", chat_template: str | None = None) -> dict[str, list[int]]:
    """``mask_conversation`` of a tool conversation (OpenAI-shape messages, arguments as JSON strings
    or objects) rendered as ``render_tools_prompt`` renders it: with ``tools=`` by a template that
    renders tools, else as the fallback's plain messages. Either way an assistant turn is its
    thought and ``<tool_call>`` blocks (trained) and a tool result sits in a user or tool turn (not)."""
    template = chat_template or tokenizer.chat_template
    if template_uses_tools(SimpleNamespace(chat_template=template)):
        return mask_conversation(tokenizer, native_messages(messages), train_on, chat_template, tools=list(tools))
    plain: list[dict[str, Any]] = [dict(m) for m in fallback_messages(messages, tools)]
    return mask_conversation(tokenizer, plain, train_on, chat_template)


def observation_spans(completion: str, offset: int = 0) -> list[tuple[int, int]]:
    """Spans of ``Observation i: ...`` lines (with their newline) in a completion-layout text.

    >>> observation_spans("Thought 1: a\\nAction 1: Search[X]\\nObservation 1: X.\\nThought 2: b")
    [(33, 51)]
    """
    return [(offset + m.start(), offset + m.end()) for m in re.finditer(r"(?m)^Observation \d+:.*(?:\n|$)", completion)]


def mask_completion(tokenizer: Any, prompt: str, completion: str, train_on: str = "all") -> dict[str, list[int]]:
    """Labels for a prompt/completion row (the paper's layout): the prompt is never trained;
    ``train_on="all"`` trains on the whole completion — what TRL's completion-only loss does, which
    includes the observations; ``"assistant"`` leaves the ``Observation i:`` lines out too. The
    tokenizer's ``eos_token`` is appended (trained), as TRL does for completions."""
    if train_on not in ("assistant", "all"):
        raise ValueError(f"train_on must be 'assistant' or 'all', not {train_on!r}")
    eos = tokenizer.eos_token or ""
    text = prompt + completion + eos
    start, end = len(prompt), len(text)
    spans = [(start, end)]
    if train_on == "assistant":
        spans = []
        for s, e in observation_spans(completion, start):
            spans.append((start, s))
            start = e
        spans.append((start, end))
    return mask_spans(tokenizer, text, [(s, e) for s, e in spans if e > s])


def load_tokenizer(spec: str) -> Any:
    """The tokenizer of a local model spec (``reactlab.models.parse_model``: ``smollm2``,
    ``hf:PATH_OR_ID``, a directory, a ``.gguf``). Imports transformers only here."""
    from transformers import AutoTokenizer

    from reactlab.models import parse_model

    path = parse_model(spec).path()
    if path.endswith(".gguf"):
        return AutoTokenizer.from_pretrained(Path(path).parent, gguf_file=Path(path).name)
    return AutoTokenizer.from_pretrained(path)
