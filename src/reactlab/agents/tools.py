"""Native function calling: the ReAct actions as JSON-schema tools, one parser for tool-call replies,
and the conversion of calls to and from ``Action``s (issue #40).

A tool reply comes in one of two shapes, both read by ``parse_tool_calls``:
- Hermes/Qwen text: ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` blocks in the model's text;
- the OpenAI message: ``{"tool_calls": [{"id", "type": "function", "function": {"name", "arguments"}}]}``
  (``arguments`` a JSON string, or a dict as chat templates take it).

A call becomes the same ``Action`` its text spelling does (``search`` with entity X == ``search[X]``), and
a reply that is not exactly one well-formed call of a known tool becomes ``Action("invalid", <text>)``,
as unparseable text does in ``parsing.py``. The text outside the call blocks is the step's thought.

Deliberate deviations:
- Tool names match case-insensitively and number arguments are taken as their text, as the text parser
  takes ``Finish[1990]``; a ``finish`` enum (FEVER's labels) is shown to the model, not enforced: the
  task's scorer judges the answer, as it does for text.
- A last ``<tool_call>`` left open (generation stopped at ``</tool_call>``) is read to the end of the text.
- Tool messages are ``types.ToolMessage`` (nested ``tool_calls``): ``types.Message`` is flat strings.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from reactlab.agents.parsing import MAX_ARG_CHARS

# The rendering lives with the one backend that renders (llm is below agents); its names stay importable here.
from reactlab.llm.hf import FALLBACK_TOOLS_PROMPT as FALLBACK_TOOLS_PROMPT
from reactlab.llm.hf import fallback_messages as fallback_messages
from reactlab.llm.hf import hermes_json
from reactlab.llm.hf import hermes_text as hermes_text
from reactlab.llm.hf import native_messages as native_messages
from reactlab.llm.hf import render_tools_prompt as render_tools_prompt
from reactlab.llm.hf import template_uses_tools as template_uses_tools
from reactlab.types import Action, Step, Tool, ToolMessage

# --- tool schemas ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ToolAction:
    """One action offered as a tool: its name, what it does, and its one string argument (the text
    between the brackets of its ReAct spelling). ``enum``: the only values that make sense, if few."""

    name: str
    description: str
    argument: str
    argument_description: str = ""
    enum: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", self.name):  # Action names are lower-case identifiers
            raise ValueError(f"tool name {self.name!r}: use lower-case letters, digits and '_'")

    def schema(self) -> Tool:
        """The OpenAI-style JSON-schema tool.

        >>> ToolAction("finish", "Answer.", "answer", enum=("yes", "no")).schema()["function"]["parameters"]
        {'type': 'object', 'properties': {'answer': {'type': 'string', 'enum': ['yes', 'no']}}, 'required': ['answer']}
        """
        prop: dict[str, Any] = {"type": "string"}
        if self.argument_description:
            prop["description"] = self.argument_description
        if self.enum:
            prop["enum"] = list(self.enum)
        params = {"type": "object", "properties": {self.argument: prop}, "required": [self.argument]}
        return {"type": "function",
                "function": {"name": self.name, "description": self.description, "parameters": params}}


REACT_ACTIONS: dict[str, ToolAction] = {
    a.name: a for a in (
        ToolAction("search", "Search the exact entity on Wikipedia; returns the first paragraph if the page "
                   "exists, else some similar entities to search.", "entity", "A Wikipedia page title."),
        ToolAction("lookup", "Return the next sentence containing the keyword in the current passage.",
                   "keyword", "A word or phrase to find in the last page searched."),
        ToolAction("finish", "Return the answer and finish the task.", "answer", "The final answer."),
        ToolAction("think", "Think about the current situation; returns nothing new.", "thought",
                   "The reasoning."),
    )
}
"""The actions of ``parsing.ACTIONS`` with the ReAct paper's descriptions; their argument names follow
the paper's ``Search[entity]``, ``Lookup[keyword]``, ``Finish[answer]``."""

DEFAULT_ACTIONS = ("search", "lookup", "finish")


def action_tools(actions: Sequence[str | ToolAction] = DEFAULT_ACTIONS, *, answers: Sequence[str] = (),
                 answer_description: str = "") -> list[ToolAction]:
    """The tool actions of an agent: names of ``REACT_ACTIONS`` or a task's own ``ToolAction``s.
    ``answers`` (FEVER's labels, MCQ letters) become ``finish``'s enum; ``answer_description`` its
    argument's description.

    >>> [t.name for t in action_tools()]
    ['search', 'lookup', 'finish']
    >>> action_tools(["finish"], answers=["SUPPORTS", "REFUTES"])[0].enum
    ('SUPPORTS', 'REFUTES')
    """
    out = []
    for a in actions:
        if isinstance(a, str):
            if a not in REACT_ACTIONS:
                raise KeyError(f"unknown action {a!r}: pass a ToolAction (known: {', '.join(REACT_ACTIONS)})")
            a = REACT_ACTIONS[a]
        if a.name == "finish" and (answers or answer_description):
            a = ToolAction(a.name, a.description, a.argument, answer_description or a.argument_description,
                           tuple(answers) or a.enum)
        out.append(a)
    if len({a.name for a in out}) != len(out):
        raise ValueError(f"duplicate tool names: {[a.name for a in out]}")
    return out


def tool_schemas(actions: Sequence[ToolAction]) -> list[Tool]:
    """The OpenAI ``tools`` list of these actions (also what ``apply_chat_template(tools=...)`` takes)."""
    return [a.schema() for a in actions]


# --- parsing ---------------------------------------------------------------------------------------


@dataclass
class ToolCall:
    """One call as parsed: a tool ``name`` and its ``arguments``; ``id`` as the API gave it (or "")."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    id: str = ""

    def to_openai(self) -> dict[str, Any]:
        """The OpenAI shape, arguments as a JSON string (what the API sends and takes back)."""
        return {"id": self.id, "type": "function",
                "function": {"name": self.name, "arguments": json.dumps(self.arguments, ensure_ascii=False)}}

    def to_hermes(self) -> str:
        """The Hermes/Qwen text block, spelled as Qwen2.5's chat template writes it.

        >>> print(ToolCall("search", {"entity": "Milhouse"}).to_hermes())
        <tool_call>
        {"name": "search", "arguments": {"entity": "Milhouse"}}
        </tool_call>
        """
        return f"<tool_call>\n{hermes_json({'name': self.name, 'arguments': self.arguments})}\n</tool_call>"


FailureKind = Literal["no_call", "bad_json", "bad_call", "unknown_tool", "missing_argument", "bad_argument",
                      "several_calls"]


@dataclass
class ParseFailure:
    """Why a reply is not a usable call: ``kind`` (one of ``FailureKind``), ``reason`` (one line for a
    person or the model), ``raw`` (the reply's text, to keep as the invalid action's text)."""

    kind: FailureKind
    reason: str
    raw: str = ""


def _known(actions: Sequence[ToolAction] | None) -> dict[str, ToolAction]:
    """The offered tools by name (default: every ReAct action)."""
    return {a.name: a for a in (actions if actions is not None else REACT_ACTIONS.values())}


_BLOCK = re.compile(r"<tool_call>(.*?)(?:</tool_call>|\Z)", re.DOTALL)


def reply_text(reply: str | Mapping[str, Any]) -> str:
    """The text of a reply: a string itself, or a message's ``content`` ("" when None)."""
    return reply if isinstance(reply, str) else str(reply.get("content") or "")


def reply_thought(reply: str | Mapping[str, Any]) -> str:
    """The text outside the ``<tool_call>`` blocks: the step's thought.

    >>> reply_thought('Find it.\\n<tool_call>{"name": "search", "arguments": {"entity": "X"}}</tool_call>')
    'Find it.'
    """
    return _BLOCK.sub("", reply_text(reply)).strip()


def parse_tool_calls(reply: str | Mapping[str, Any], actions: Sequence[ToolAction] | None = None, *,
                     single: bool = True) -> list[ToolCall] | ParseFailure:
    """The calls of a model's reply, checked against ``actions`` (default: search, lookup, finish, think).

    ``reply``: the model's text (``<tool_call>`` blocks) or an OpenAI message (its ``tool_calls``, else
    the blocks in its ``content``). Whitespace around and inside blocks is free; the JSON must parse, the
    tool exist, and its argument be present. ``single``: more than one call is a failure.

    >>> parse_tool_calls(' <tool_call>\\n{"name": "Search", "arguments": {"entity": "X"}}\\n</tool_call>')
    [ToolCall(name='search', arguments={'entity': 'X'}, id='')]
    >>> parse_tool_calls('<tool_call>{"name": "search", "arguments": {}}</tool_call>').reason
    "tool 'search' needs the argument 'entity'"
    """
    known = _known(actions)
    text = reply_text(reply)
    raws: list[tuple[Any, str]] = []  # (the call as given, where it came from)
    if not isinstance(reply, str) and reply.get("tool_calls"):
        given = reply["tool_calls"]
        text = text or json.dumps(given, ensure_ascii=False, default=str)  # what an invalid action shows
        if not isinstance(given, list):
            return ParseFailure("bad_call", "'tool_calls' must be a list", text)
        raws = [(c, f"tool call {i + 1}") for i, c in enumerate(given)]
    else:
        for i, m in enumerate(_BLOCK.finditer(text)):
            try:
                raws.append((json.loads(m.group(1)), f"tool call {i + 1}"))
            except json.JSONDecodeError as e:
                return ParseFailure("bad_json", f"tool call {i + 1} is not JSON: {e}", text)
    if not raws:
        return ParseFailure("no_call", "no tool call in the reply", text)
    if single and len(raws) > 1:
        return ParseFailure("several_calls", f"{len(raws)} tool calls where one was expected", text)
    calls = []
    for raw, where in raws:
        call = _check_call(raw, where, known)
        if isinstance(call, ParseFailure):
            call.raw = text
            return call
        calls.append(call)
    return calls


def _check_call(raw: Any, where: str, known: Mapping[str, ToolAction]) -> ToolCall | ParseFailure:
    """One call in either shape (``{"name", "arguments"}`` or OpenAI's ``{"id", "function": {...}}``)."""
    if not isinstance(raw, dict):
        return ParseFailure("bad_call", f"{where} must be a JSON object")
    call_id = raw.get("id") or ""
    if "function" in raw:
        raw = raw["function"]
        if not isinstance(raw, dict):
            return ParseFailure("bad_call", f"{where}: 'function' must be a JSON object")
    name, args = raw.get("name"), raw.get("arguments")
    if not isinstance(name, str) or "arguments" not in raw:
        return ParseFailure("bad_call", f"{where} needs a 'name' (a string) and 'arguments'")
    if isinstance(args, str):  # the OpenAI shape: arguments as a JSON string ("" for none)
        try:
            args = json.loads(args) if args.strip() else {}
        except json.JSONDecodeError as e:
            return ParseFailure("bad_json", f"{where}: arguments are not JSON: {e}")
    if not isinstance(args, dict):
        return ParseFailure("bad_call", f"{where}: 'arguments' must be a JSON object")
    action = known.get(name.strip().lower())
    if action is None:
        return ParseFailure("unknown_tool", f"unknown tool {name!r} (tools: {', '.join(known)})")
    if action.argument not in args:
        return ParseFailure("missing_argument", f"tool {action.name!r} needs the argument {action.argument!r}")
    extra = sorted(set(args) - {action.argument})
    if extra:
        return ParseFailure("bad_argument", f"tool {action.name!r} takes only {action.argument!r}, not {extra}")
    value = args[action.argument]
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return ParseFailure("bad_argument", f"tool {action.name!r}: {action.argument!r} must be a string")
    return ToolCall(action.name, {action.argument: value}, str(call_id))


# --- calls <-> actions -----------------------------------------------------------------------------


def call_to_action(call: ToolCall, actions: Sequence[ToolAction] | None = None) -> Action:
    """A call ``parse_tool_calls`` returned as the ``Action`` its text spelling parses to (argument stripped and bounded).

    >>> call_to_action(ToolCall("search", {"entity": " Scott Derrickson "}))
    Action(name='search', arg='Scott Derrickson')
    """
    value = call.arguments[_known(actions)[call.name].argument]
    return Action(call.name, str(value).strip()[:MAX_ARG_CHARS])


def reply_to_action(reply: str | Mapping[str, Any], actions: Sequence[ToolAction] | None = None) -> Action:
    """The one action of a reply; anything but one well-formed call is ``invalid`` with the reply's text.

    >>> reply_to_action("I think the answer is 3")
    Action(name='invalid', arg='I think the answer is 3')
    """
    calls = parse_tool_calls(reply, actions)
    if isinstance(calls, ParseFailure):
        return Action("invalid", calls.raw.strip()[:MAX_ARG_CHARS])
    return call_to_action(calls[0], actions)


def action_to_call(action: Action, actions: Sequence[ToolAction] | None = None, call_id: str = "") -> ToolCall:
    """The tool call of a (valid) action; raises ``ValueError`` for one that is not a tool.

    >>> action_to_call(Action("finish", "yes"), call_id="call_1")
    ToolCall(name='finish', arguments={'answer': 'yes'}, id='call_1')
    """
    known = _known(actions)
    if action.name not in known:
        raise ValueError(f"{action.name!r} is not a tool (tools: {', '.join(known)})")
    return ToolCall(action.name, {known[action.name].argument: action.arg}, call_id)


def step_messages(step: Step, actions: Sequence[ToolAction] | None = None) -> list[ToolMessage]:
    """One step as the assistant's tool-call message and the tool's answer (OpenAI shape, call id
    ``call_<i>``). An invalid action has no call: its text follows the thought in the assistant's
    content, and the observation comes back as a user message."""
    if step.action.name == "invalid":
        content = "\n".join(t for t in (step.thought, step.action.arg) if t)
        return [{"role": "assistant", "content": content}, {"role": "user", "content": step.observation}]
    call = action_to_call(step.action, actions, f"call_{step.i}")
    return [{"role": "assistant", "content": step.thought, "tool_calls": [call.to_openai()]},
            {"role": "tool", "tool_call_id": call.id, "name": call.name, "content": step.observation}]


def steps_to_messages(steps: Sequence[Step], actions: Sequence[ToolAction] | None = None) -> list[ToolMessage]:
    """A trajectory's steps as tool messages (to follow the system and question messages)."""
    return [m for s in steps for m in step_messages(s, actions)]


def messages_to_steps(messages: Sequence[Mapping[str, Any]],
                      actions: Sequence[ToolAction] | None = None) -> list[Step]:
    """Steps back from tool messages: each assistant message and the message answering it. Messages
    before the first assistant message (system, question) are skipped. ``raw`` is the assistant's
    reply as Hermes text; an invalid reply's whole text is its action (its thought is empty)."""
    steps: list[Step] = []
    rest = list(messages)
    while rest and rest[0].get("role") != "assistant":
        rest.pop(0)
    for k, msg in enumerate(rest):
        if msg.get("role") != "assistant":
            continue
        nxt = rest[k + 1] if k + 1 < len(rest) and rest[k + 1].get("role") != "assistant" else None
        action = reply_to_action(msg, actions)
        thought = reply_thought(msg) if action.name != "invalid" else ""
        steps.append(Step(i=len(steps) + 1, thought=thought, action=action,
                          observation=str(nxt.get("content") or "") if nxt else "", raw=hermes_text(msg)))
    return steps
