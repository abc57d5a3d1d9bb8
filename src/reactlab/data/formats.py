"""Supervised fine-tuning rows from trajectories: pure functions ``Trajectory -> row`` per layout
(``messages``, ``completion``, ``alpaca``, ``sharegpt``, ``openai``; see ``FORMATS``).

Every step is rendered by ``reactlab.agents.parsing``, the functions the agent itself uses, so a
row shows the model exactly what ``reactlab run`` will show it. ``source`` and ``prompt_id`` ride
along as extra columns, except in ``openai`` rows (OpenAI's validator accepts no extra keys).
"""

from __future__ import annotations

from typing import Any

from reactlab.agents.parsing import chat_assistant, chat_observation, completion_step, format_action
from reactlab.agents.prompting import ZERO_SHOT, layout_prompt_id
from reactlab.types import Message, Trajectory

SFT_FORMATS = ("messages", "completion", "alpaca", "sharegpt", "openai")
LAYOUT_IDS = {"messages": "chat", "openai": "chat", "sharegpt": "chat", "completion": ZERO_SHOT, "alpaca": "fireact"}


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


def to_row(fmt: str, traj: Trajectory, source: str = "", system: str | None = None, **options: Any) -> dict[str, Any]:
    """Dispatch to one SFT layout by name; ``options`` go to that layout's function. Every row but
    OpenAI's (whose API takes ``messages`` only) is tagged with its ``task`` and ``method``."""
    if fmt == "openai":
        return to_openai(traj, system, **options)
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
    elif fmt == "sharegpt":
        entry = {"formatting": "sharegpt", "columns": {"messages": "conversations"},
                 "tags": {"role_tag": "from", "content_tag": "value", "user_tag": "human",
                          "assistant_tag": "gpt", "observation_tag": "observation"}}
    else:
        raise ValueError(f"dataset_info.json is for alpaca and sharegpt, not {fmt!r}")
    if system:
        entry["columns"]["system"] = "system"
    return {(name if split == "train" else f"{name}_{split}"): {"file_name": f} | entry for split, f in files.items()}


def row_views(row: dict[str, Any], fmt: str) -> list[tuple[str, Any]]:
    """What the model sees of a row, as ``(label, chat messages or text)`` pairs: one for SFT rows,
    chosen + rejected for DPO, the prompt for prompt rows. ShareGPT observations are shown as user
    turns and Alpaca rows as one user + one assistant turn (how LLaMA-Factory pairs them).
    """
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
