"""Training rows from ``reactlab serve --record DIR`` recordings: any client's conversations with our
server, one TRL ``messages`` row each (``tool_calls`` and ``tool`` turns kept, the request's ``tools``
beside them), optionally joined with rewards or labels a user computed for each conversation.

A conversation's LAST exchange holds its whole history (every request resends it): the row is that
request's messages plus its reply. Rewards come from a JSONL file of ``{conversation_id, reward}`` or
``{conversation_id, label}`` lines; with one, only conversations with ``reward >= min_reward`` or a true
label are kept, the others count as dropped. A torn last line (a server killed mid-write) is skipped.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reactlab.agents.tools import native_messages
from reactlab.data.select import excluded_questions, normalize_question, split_of
from reactlab.data.sources import split_name
from reactlab.io import DataError, iter_jsonl, write_json_atomic, write_jsonl_atomic

PATTERN = "exchanges-*.jsonl"
"""The files ``serve.record.Recorder`` writes, one per server process."""


def is_recording(spec: str) -> bool:
    """Whether a ``--from`` source is a recording directory (it holds ``exchanges-*.jsonl`` files)."""
    path = Path(split_name(spec)[1])
    return path.is_dir() and any(path.glob(PATTERN))


def read_exchanges(directory: str | Path) -> tuple[list[tuple[str, dict[str, Any]]], int]:
    """Every exchange of a recording as ``(file:line, record)``, checked, and the number of torn
    last lines skipped. Raises ``DataError`` naming the file and line of a bad record."""
    directory = Path(directory)
    files = sorted(directory.glob(PATTERN))
    if not files:
        raise DataError(f"{directory}: no recording here ({PATTERN} files of `reactlab serve --record`)")
    out, torn = [], 0
    for path in files:
        raw = path.read_bytes()
        whole = raw[: raw.rfind(b"\n") + 1]
        torn += len(whole) < len(raw)  # a write killed midway: the record never finished
        for lineno, line in enumerate(whole.decode("utf-8", errors="replace").splitlines(), 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{where}: invalid JSON ({e.msg})") from None
            out.append((where, _check(rec, where)))
    return out, torn


def first_user_turn(messages: Sequence[dict[str, Any]]) -> str:
    """The content of a conversation's first user message (its question), "" without one."""
    return next((str(m.get("content") or "") for m in messages if m.get("role") == "user"), "")


def _check(rec: Any, where: str) -> dict[str, Any]:
    """A record's fields, with its request messages and reply as one conversation."""
    if not isinstance(rec, dict) or not isinstance(rec.get("conversation_id"), str):
        raise DataError(f"{where}: not a recorded exchange (no string 'conversation_id')")
    request, reply = rec.get("request"), rec.get("reply")
    if not isinstance(request, dict) or not isinstance(reply, dict) or not isinstance(reply.get("message"), dict):
        raise DataError(f"{where}: a recorded exchange needs 'request' and 'reply.message' objects")
    if not isinstance(request.get("tools", []), list):
        raise DataError(f"{where}: 'request.tools' must be a list")
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages:
        raise DataError(f"{where}: 'request.messages' must be a non-empty list")
    return {**rec, "messages": [_message(m, f"{where}: messages[{i}]") for i, m in
                                enumerate([*messages, reply["message"]])]}


def _message(m: Any, where: str) -> dict[str, Any]:
    """A message as the server read it: string content (text parts joined; a call-only turn's None is
    ""), and an assistant's ``tool_calls`` or a tool result's ``tool_call_id`` / ``name`` kept."""
    if not isinstance(m, dict) or not isinstance(m.get("role"), str):
        raise DataError(f"{where} must be an object with a string 'role'")
    content = m.get("content")
    if isinstance(content, list):
        parts = [p.get("text") if isinstance(p, dict) else None for p in content]
        content = "".join(parts) if all(isinstance(t, str) for t in parts) else None  # type: ignore[arg-type]
    elif content is None and m.get("tool_calls"):
        content = ""
    if not isinstance(content, str):
        raise DataError(f"{where}.content must be a string (or text parts)")
    out: dict[str, Any] = {"role": m["role"], "content": content}
    for key in ("tool_calls", "tool_call_id", "name"):
        if m.get(key) is not None:
            out[key] = m[key]
    if not isinstance(out.get("tool_calls", []), list):
        raise DataError(f"{where}.tool_calls must be a list")
    return out


def read_labels(path: str | Path) -> dict[str, float]:
    """``{conversation_id: reward}`` from a JSONL file; a label counts as reward 1 (true) or 0 (false)."""
    out: dict[str, float] = {}
    for where, rec in iter_jsonl(path):
        if not isinstance(rec, dict) or not isinstance(rec.get("conversation_id"), str):
            raise DataError(f"{where}: needs a string 'conversation_id'")
        reward, label = rec.get("reward"), rec.get("label")
        if isinstance(label, bool) and reward is None:
            out[rec["conversation_id"]] = float(label)
        elif isinstance(reward, (int, float)) and not isinstance(reward, bool) and math.isfinite(reward) \
                and label is None:
            out[rec["conversation_id"]] = float(reward)
        else:
            raise DataError(f"{where}: needs one of 'reward' (a number) or 'label' (true/false)")
    return out


def conversation_rows(exchanges: list[tuple[str, dict[str, Any]]], source: str = "") -> list[dict[str, Any]]:
    """One ``messages`` row per conversation, from its last exchange (by time, then file order); call
    arguments as objects, as chat templates take them."""
    last: dict[str, dict[str, Any]] = {}
    for _, rec in sorted(enumerate(exchanges), key=lambda x: (x[1][1].get("time") or 0, x[0])):
        last[rec[1]["conversation_id"]] = rec[1]
    return [{"messages": native_messages(rec["messages"]), "tools": rec["request"].get("tools") or [],
             "conversation_id": cid, "source": source} for cid, rec in last.items()]


def build_recorded(
    directories: Sequence[str],
    out: str | Path,
    labels: str | Path | None = None,
    min_reward: float = 1.0,
    exclude: Sequence[str | Path] = (),
    exclude_splits: Sequence[str] | None = None,
    val_frac: float = 0.05,
    tokenizer: Any = None,
) -> dict[str, Any]:
    """Write ``train.jsonl`` / ``val.jsonl`` / ``stats.json`` of recorded conversations to ``out`` and
    return the stats (with ``tokenizer``, a spec or a loaded one, their token counts as the model sees
    them: ``data.build.token_stats``). Conversations whose first user message is a question of ``exclude_splits``
    (default: every task's evaluation splits) or ``exclude`` files are dropped, as ``data build`` drops
    them; a conversation goes to val by a hash of its id (``val_frac``)."""
    from reactlab.data.build import resolve_tokenizer, token_stats
    from reactlab.data.select import eval_splits

    if not 0.0 <= val_frac < 1.0:
        raise ValueError(f"val_frac must be in [0, 1), got {val_frac}")
    rows, torn = [], 0
    for spec in directories:
        name, path = split_name(spec)
        exchanges, t = read_exchanges(path)
        rows += conversation_rows(exchanges, name)
        torn += t
    splits = eval_splits() if exclude_splits is None else list(exclude_splits)
    excluded = excluded_questions(splits, exclude)
    rewards = read_labels(labels) if labels is not None else None
    dropped: Counter[str] = Counter()
    kept = []
    for row in rows:
        question = first_user_turn(row["messages"])
        if normalize_question(question) in excluded:
            dropped["excluded"] += 1
        elif rewards is not None and row["conversation_id"] not in rewards:
            dropped["unlabelled"] += 1
        elif rewards is not None and rewards[row["conversation_id"]] < min_reward:
            dropped["low_reward"] += 1
        else:
            if rewards is not None:
                row["reward"] = rewards[row["conversation_id"]]
            kept.append(row)
    parts: dict[str, list[dict[str, Any]]] = {"train": [], "val": []}
    for row in kept:
        parts[split_of(row["conversation_id"], val_frac)].append(row)
    out = Path(out)
    for split, part in parts.items():
        write_jsonl_atomic(out / f"{split}.jsonl", part)
    stats = {"format": "messages", "sources": list(directories), "rows": {k: len(v) for k, v in parts.items()},
             "conversations": len(rows), "dropped": dict(sorted(dropped.items())), "torn_lines": torn,
             "tool_calls": sum(len(m.get("tool_calls") or []) for r in kept for m in r["messages"]),
             "options": {"labels": str(labels) if labels else None, "min_reward": min_reward,
                         "exclude_splits": splits, "exclude": [str(x) for x in exclude], "val_frac": val_frac}}
    tok = resolve_tokenizer(tokenizer)
    if tok is not None and kept:
        stats["tokens"] = token_stats(tok, tokenizer, kept, "messages-tools")
    write_json_atomic(out / "stats.json", stats)
    return stats
