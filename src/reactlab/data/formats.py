"""Supervised fine-tuning rows from trajectories: pure functions ``Trajectory -> row`` per layout
(``messages``, ``completion``, ``alpaca``, ``sharegpt``, ``openai``, and their native function-calling
twins ``messages-tools``, ``sharegpt-tools``, ``openai-tools``; see ``SFT_FORMATS``).

Every step is rendered by ``reactlab.agents.parsing`` (text) or ``reactlab.agents.tools`` (tool
calls), the functions the agent itself uses, so a row shows the model exactly what ``reactlab run``
will show it. ``source`` and ``prompt_id`` ride along as extra columns, except in ``openai`` rows
(OpenAI's validator accepts no extra keys).

Deliberate deviation: a tool row drops the last step's observation, as the text layouts do (the
episode ends there), so a row read back (``tool_row_messages`` + ``messages_to_steps``) has the
trajectory's steps with an empty last observation.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from reactlab.agents.parsing import chat_assistant, chat_observation, completion_step, format_action
from reactlab.agents.prompting import ZERO_SHOT, layout_prompt_id
from reactlab.agents.tools import (
    DEFAULT_ACTIONS,
    ToolAction,
    action_tools,
    fallback_messages,
    hermes_text,
    native_messages,
    parse_tool_calls,
    reply_thought,
    steps_to_messages,
    tool_schemas,
)
from reactlab.types import Message, Tool, ToolMessage, Trajectory

TOOL_FORMATS = ("messages-tools", "sharegpt-tools", "openai-tools")
SFT_FORMATS = ("messages", "completion", "alpaca", "sharegpt", "openai", *TOOL_FORMATS)
LAYOUT_IDS = {"messages": "chat", "openai": "chat", "sharegpt": "chat", "completion": ZERO_SHOT, "alpaca": "fireact",
              **dict.fromkeys(TOOL_FORMATS, "tools")}


def method_of(traj: Trajectory) -> str:
    """The agent method a trajectory shows: its ``method``, else the ``/method`` of its prompt id
    (trajectories from elsewhere), else ``react``.

    >>> method_of(Trajectory("1", "", "q", "", "react", "hotpotqa_react@1/act", ""))
    'act'
    """
    if traj.method:
        return traj.method
    tail = traj.prompt_id.rsplit("/", 1)
    return tail[1] if len(tail) == 2 and tail[1] else "react"


def layout_id(fmt: str, traj: Trajectory) -> str:
    """The prompt id stamped into a row: ``chat@1/react``, ``zeroshot@1/react``, ``fireact@1/react``."""
    return layout_prompt_id(LAYOUT_IDS.get(fmt, "chat"), method_of(traj))


def chat_messages(traj: Trajectory, system: str | None = None) -> list[Message]:
    """The conversation of ``ReActAgent(style="chat")``: every step's assistant turn followed by its
    observation, except after the last step (the episode ends there).

    >>> from reactlab.types import Action, Step
    >>> t = Trajectory("1", "", "Q?", "y", "", "", "", steps=[
    ...     Step(1, "Go.", Action("search", "X"), "X is y."), Step(2, "So y.", Action("finish", "y"), "Episode finished.")])
    >>> [m["content"] for m in chat_messages(t, system="Be brief.")]
    ['Be brief.', 'Q?', 'Thought: Go.\\nAction: search[X]', 'Observation: X is y.', 'Thought: So y.\\nAction: finish[y]']
    """
    out: list[Message] = [{"role": "system", "content": system}] if system else []
    out.append({"role": "user", "content": traj.question})
    for n, s in enumerate(traj.steps):
        out.append({"role": "assistant", "content": chat_assistant(s.thought, s.action)})
        if n + 1 < len(traj.steps):
            out.append({"role": "user", "content": chat_observation(s.observation)})
    return out


def to_messages(traj: Trajectory, source: str = "", system: str | None = None) -> dict[str, Any]:
    """TRL conversational row ``{"messages": [...], "source", "prompt_id"}`` (see ``chat_messages``)."""
    return {"messages": chat_messages(traj, system), "source": source, "prompt_id": layout_id("messages", traj)}


def to_completion(traj: Trajectory, source: str = "") -> dict[str, Any]:
    """TRL prompt/completion row in the paper's zero-shot text (no trailing newline after the finish).

    >>> from reactlab.types import Action, Step
    >>> t = Trajectory("1", "", "Q?", "y", "", "", "", steps=[
    ...     Step(1, "Go.", Action("search", "X"), "X is y."), Step(2, "So y.", Action("finish", "y"), "Episode finished.")])
    >>> r = to_completion(t)
    >>> r["prompt"], r["completion"]
    ('Question: Q?\\n', 'Thought 1: Go.\\nAction 1: Search[X]\\nObservation 1: X is y.\\nThought 2: So y.\\nAction 2: Finish[y]')
    """
    act_only = method_of(traj) == "act"  # the Act layout has no Thought lines
    *head, last = traj.steps
    body = "".join(completion_step(n, None if act_only else s.thought, s.action, s.observation)
                   for n, s in enumerate(head, 1))
    k = len(traj.steps)
    body += ("" if act_only else f"Thought {k}: {last.thought}\n") + f"Action {k}: {format_action(last.action)}"
    return {"prompt": f"Question: {traj.question}\n", "completion": body, "source": source,
            "prompt_id": layout_id("completion", traj)}


def fireact_output(traj: Trajectory) -> str:
    """FireAct's Alpaca ``output``: each step as ``Thought:/Action:/Observation:`` lines, each ending
    in a newline (the finish step keeps its observation, as FireAct's files do).

    >>> from reactlab.types import Action, Step
    >>> fireact_output(Trajectory("1", "", "Q?", "y", "", "", "", steps=[Step(1, "So y.", Action("finish", "y"), "ok")]))
    'Thought: So y.\\nAction: finish[y]\\nObservation: ok\\n'
    """
    return "".join(f"{chat_assistant(s.thought, s.action)}\n{chat_observation(s.observation)}\n" for s in traj.steps)


def to_alpaca(traj: Trajectory, source: str = "", system: str | None = None) -> dict[str, Any]:
    """LLaMA-Factory / FireAct Alpaca row ``{"instruction", "input", "output", [system]}``."""
    row: dict[str, Any] = {"instruction": traj.question, "input": "", "output": fireact_output(traj)}
    if system:
        row["system"] = system
    return row | {"source": source, "prompt_id": layout_id("alpaca", traj)}


def to_sharegpt(traj: Trajectory, source: str = "", system: str | None = None,
                observation_role: str = "observation") -> dict[str, Any]:
    """LLaMA-Factory ShareGPT row: ``conversations`` alternate human/observation (odd positions) and
    gpt (even positions) and end with gpt, as its converter requires.

    >>> from reactlab.types import Action, Step
    >>> t = Trajectory("1", "", "Q?", "y", "", "", "", steps=[
    ...     Step(1, "Go.", Action("search", "X"), "X is y."), Step(2, "So y.", Action("finish", "y"), "Episode finished.")])
    >>> [c["from"] for c in to_sharegpt(t)["conversations"]]
    ['human', 'gpt', 'observation', 'gpt']
    """
    if observation_role not in ("observation", "human"):
        raise ValueError(f"observation_role must be 'observation' or 'human', not {observation_role!r}")
    tags = {"user": "human", "assistant": "gpt"}
    conv = []
    for n, m in enumerate(chat_messages(traj)):
        role = tags[m["role"]] if m["role"] == "assistant" or n == 0 else observation_role
        conv.append({"from": role, "value": m["content"]})
    row: dict[str, Any] = {"conversations": conv}
    if system:
        row["system"] = system
    return row | {"source": source, "prompt_id": layout_id("sharegpt", traj)}


def to_openai(traj: Trajectory, system: str | None = None, skip_invalid: bool = False) -> dict[str, Any]:
    """OpenAI fine-tuning row ``{"messages": [...]}``; ``skip_invalid`` puts ``"weight": 0`` on the
    assistant turns whose action was invalid (the model's mistakes stay as context, never as targets)."""
    msgs: list[dict[str, Any]] = [dict(m) for m in chat_messages(traj, system)]
    if skip_invalid:
        turns = [m for m in msgs if m["role"] == "assistant"]
        for m, s in zip(turns, traj.steps, strict=True):
            if s.action.name == "invalid":
                m["weight"] = 0
    return {"messages": msgs}


# --- tool rows (native function calling) ----------------------------------------------------------


def traj_tools(traj: Trajectory) -> list[ToolAction]:
    """The tools a tool row offers: search, lookup, finish, and think when a step used it."""
    used = {s.action.name for s in traj.steps}
    return action_tools([*DEFAULT_ACTIONS, *(["think"] if "think" in used else [])])


def tool_messages(traj: Trajectory, system: str | None = None,
                  actions: Sequence[ToolAction] | None = None) -> list[ToolMessage]:
    """The conversation in the OpenAI tool shape (``agents.tools.steps_to_messages``: an assistant
    message with the thought as content and one call ``call_<i>``, then a ``tool`` message with the
    observation; an invalid step is plain text answered by a user message), without the last
    observation (module doc). Call arguments are JSON strings, as the API has them."""
    head: list[ToolMessage] = [{"role": "system", "content": system}] if system else []
    head.append({"role": "user", "content": traj.question})
    return head + steps_to_messages(traj.steps, actions if actions is not None else traj_tools(traj))[:-1]


def to_messages_tools(traj: Trajectory, source: str = "", system: str | None = None) -> dict[str, Any]:
    """TRL conversational row with tools: ``{"messages", "tools", "source", "prompt_id"}``.

    Call arguments are objects (what chat templates ``tojson``); ``tools`` is a JSON string (TRL's
    SFTTrainer ``json.loads`` it), so a ``datasets`` table does not merge the schemas' keys into one
    struct and render ``null`` for the missing ones; load ``messages`` as ``datasets.Json`` for the
    same reason (``train.rows.tool_dataset``)."""
    actions = traj_tools(traj)
    return {"messages": native_messages(tool_messages(traj, system, actions)),
            "tools": json.dumps(tool_schemas(actions), ensure_ascii=False), "source": source,
            "prompt_id": layout_id("messages-tools", traj)}


def to_openai_tools(traj: Trajectory, system: str | None = None, skip_invalid: bool = False) -> dict[str, Any]:
    """OpenAI fine-tuning row with tools: ``{"messages", "tools"}``; calls with ids and arguments as JSON
    strings, ``tool`` messages with ``tool_call_id`` only, no ``content`` on a call without a thought.
    ``skip_invalid``: ``"weight": 0`` on the invalid steps' assistant turns (``to_openai``)."""
    actions = traj_tools(traj)
    msgs = []
    for m in tool_messages(traj, system, actions):
        m = {k: v for k, v in m.items() if not (k == "name" and m["role"] == "tool")}
        if m.get("tool_calls") and not m.get("content"):
            del m["content"]
        elif m["role"] == "assistant" and skip_invalid and not m.get("tool_calls"):
            m["weight"] = 0  # an assistant turn without a call is an invalid step (step_messages)
        msgs.append(m)
    return {"messages": msgs, "tools": tool_schemas(actions)}


def to_sharegpt_tools(traj: Trajectory, source: str = "", system: str | None = None) -> dict[str, Any]:
    """LLaMA-Factory ShareGPT row with tools: ``conversations`` of human / function_call / observation
    / gpt turns and ``tools`` (a JSON string), as its ``dataset_info.json`` declares them.

    A ``function_call`` value is the assistant's Hermes text (``agents.tools.hermes_text``: the thought,
    then the ``<tool_call>`` block): LLaMA-Factory (0.9.5) takes the JSON inside its template's
    ``tool_call_words`` (``<tool_call>``, ``</tool_call>`` by default) and keeps the text before it,
    so its ``qwen`` template renders the turn as Qwen2.5's does. An invalid step is a ``gpt`` turn
    answered by a ``human`` one (it called no tool).

    >>> from reactlab.types import Action, Step
    >>> t = Trajectory("1", "", "Q?", "y", "", "", "", steps=[
    ...     Step(1, "Go.", Action("search", "X"), "X is y."), Step(2, "", Action("finish", "y"), "Episode finished.")])
    >>> [c["from"] for c in to_sharegpt_tools(t)["conversations"]]
    ['human', 'function_call', 'observation', 'function_call']
    """
    actions = traj_tools(traj)
    conv = []
    for m in native_messages(tool_messages(traj, None, actions)):
        if m.get("tool_calls"):
            conv.append({"from": "function_call", "value": hermes_text(m)})
        else:
            tag = {"user": "human", "assistant": "gpt", "tool": "observation"}[m["role"]]
            conv.append({"from": tag, "value": str(m.get("content") or "")})
    row: dict[str, Any] = {"conversations": conv, "tools": json.dumps(tool_schemas(actions), ensure_ascii=False)}
    if system:
        row["system"] = system
    return row | {"source": source, "prompt_id": layout_id("sharegpt-tools", traj)}


def row_tools(row: Mapping[str, Any]) -> list[Tool]:
    """A tool row's ``tools``: a list, or a JSON string of one (TRL and LLaMA-Factory take both)."""
    tools = row.get("tools") or []
    return json.loads(tools) if isinstance(tools, str) else list(tools)


def tool_row_messages(row: Mapping[str, Any]) -> list[ToolMessage]:
    """The OpenAI-shape messages of a tool row of any tool format (what ``messages_to_steps`` reads).
    ShareGPT turns come back with call ids ``call_<n>`` in order; a ``system`` column is the first message."""
    if "messages" in row:
        return [dict(m) for m in row["messages"]]
    out: list[ToolMessage] = [{"role": "system", "content": row["system"]}] if row.get("system") else []
    n = 0
    for turn in row["conversations"]:
        tag, value = turn["from"], turn["value"]
        calls = parse_tool_calls(value, single=False) if tag == "function_call" else []
        if isinstance(calls, list) and calls:
            for call in calls:
                n += 1
                call.id = f"call_{n}"
            out.append({"role": "assistant", "content": reply_thought(value),
                        "tool_calls": [call.to_openai() for call in calls]})
        elif tag == "function_call":  # not a well-formed call: the text, read back as an invalid step
            out.append({"role": "assistant", "content": value})
        elif tag == "observation":
            last = out[-1] if out else {}
            ids = [c["id"] for c in last.get("tool_calls") or []]
            out.append({"role": "tool", "tool_call_id": ids[0] if ids else "", "content": value})
        else:
            out.append({"role": {"human": "user", "gpt": "assistant"}[tag], "content": value})
    return out


def to_row(fmt: str, traj: Trajectory, source: str = "", system: str | None = None, **options: Any) -> dict[str, Any]:
    """Dispatch to one SFT layout by name; ``options`` go to that layout's function. Every row but
    OpenAI's (whose API takes ``messages`` only) is tagged with its ``task`` and ``method``."""
    if fmt == "openai":
        return to_openai(traj, system, **options)
    if fmt == "openai-tools":
        return to_openai_tools(traj, system, **options)
    if fmt == "messages":
        row = to_messages(traj, source, system)
    elif fmt == "completion":
        if system:
            raise ValueError("the completion layout has no system prompt (drop --system)")
        row = to_completion(traj, source)
    elif fmt == "alpaca":
        row = to_alpaca(traj, source, system)
    elif fmt == "sharegpt":
        row = to_sharegpt(traj, source, system, **options)
    elif fmt == "messages-tools":
        row = to_messages_tools(traj, source, system)
    elif fmt == "sharegpt-tools":
        row = to_sharegpt_tools(traj, source, system)
    else:
        raise ValueError(f"unknown SFT format {fmt!r}; known: {', '.join(SFT_FORMATS)}")
    return row | {"task": traj.task, "method": method_of(traj)}


def dataset_info(fmt: str, name: str, files: dict[str, str], system: bool = False) -> dict[str, Any]:
    """LLaMA-Factory ``dataset_info.json`` entries, one per file (``{"train": "train.jsonl", ...}``):
    ``name`` for train, ``name_<split>`` for the others.

    >>> dataset_info("alpaca", "hp", {"train": "train.jsonl"})["hp"]["columns"]
    {'prompt': 'instruction', 'query': 'input', 'response': 'output'}
    """
    if fmt == "alpaca":
        entry: dict[str, Any] = {"formatting": "alpaca",
                                 "columns": {"prompt": "instruction", "query": "input", "response": "output"}}
    elif fmt in ("sharegpt", "sharegpt-tools"):
        entry = {"formatting": "sharegpt", "columns": {"messages": "conversations"},
                 "tags": {"role_tag": "from", "content_tag": "value", "user_tag": "human",
                          "assistant_tag": "gpt", "observation_tag": "observation"}}
        if fmt == "sharegpt-tools":
            entry["columns"]["tools"] = "tools"
            entry["tags"]["function_tag"] = "function_call"
    else:
        raise ValueError(f"dataset_info.json is for alpaca, sharegpt and sharegpt-tools, not {fmt!r}")
    if system:
        entry["columns"]["system"] = "system"
    return {(name if split == "train" else f"{name}_{split}"): {"file_name": f} | entry for split, f in files.items()}


def row_views(row: dict[str, Any], fmt: str) -> list[tuple[str, Any]]:
    """What the model sees of a row, as ``(label, chat messages or text)`` pairs: one for SFT rows,
    chosen + rejected for DPO, the prompt for prompt rows. ShareGPT observations are shown as user
    turns and Alpaca rows as one user + one assistant turn (how LLaMA-Factory pairs them); tool rows
    as plain chat messages, Hermes style (``agents.tools.fallback_messages``: what SmolLM2 is trained
    on; a tool-calling template differs at most in its default system text).
    """
    if fmt in TOOL_FORMATS:
        return [("", fallback_messages(tool_row_messages(row), row_tools(row)))]
    if fmt in ("messages", "openai"):  # content null: an assistant turn of tool calls only
        return [("", [{"role": m["role"], "content": m.get("content") or ""} for m in row["messages"]])]
    if fmt == "completion":
        return [("", row["prompt"] + row["completion"])]
    if fmt == "alpaca":
        user = "\n".join(x for x in (row["instruction"], row.get("input", "")) if x)
        sys_ = [{"role": "system", "content": row["system"]}] if row.get("system") else []
        return [("", sys_ + [{"role": "user", "content": user}, {"role": "assistant", "content": row["output"]}])]
    if fmt == "sharegpt":
        sys_ = [{"role": "system", "content": row["system"]}] if row.get("system") else []
        roles = {"human": "user", "observation": "user", "gpt": "assistant"}
        return [("", sys_ + [{"role": roles[c["from"]], "content": c["value"]} for c in row["conversations"]])]
    if fmt == "dpo":
        return [("chosen", row["prompt"] + row["chosen"]), ("rejected", row["prompt"] + row["rejected"])]
    if fmt == "kto":
        return [(f"label={row['label']}", row["prompt"] + row["completion"])]
    if fmt == "prompts":
        return [(f"answer={row['answer']}", row["prompt"])]
    raise ValueError(f"unknown format {fmt!r}")
