"""Training rows for one role of the Answer -> Evaluate pipeline (``agents/pipeline.py``), from its runs.

A row of role R is R's last user message (what the agent sends with ``--prompt zeroshot``, byte for
byte) and one reply up to its first answer line, kept when its strictly parsed letter is the gold
one. Who wrote the replies makes the kind of teacher data: a teacher model through an API, the
local model's own samples (rejection sampling) or a hinted prompt (rationalisation; the row's
prompt is the one without the hint). Layouts: ``messages`` and ``alpaca``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from reactlab.data.select import normalize_question
from reactlab.data.sources import Sample
from reactlab.types import Message, Trajectory

ROLE_FORMATS = ("messages", "alpaca")


def role_prompt_id(traj: Trajectory, role: str) -> str:
    """The prompt id of a role's rows: the pipeline prompt's id, zero-shot, and the role.

    >>> role_prompt_id(Trajectory("1", "", "q", "A", "pipeline", "logic_mcq_pipeline@1/answer_evaluate+hint", ""), "answer")
    'logic_mcq_pipeline@1:zeroshot/answer'
    """
    base = traj.prompt_id.split("/", 1)[0].removesuffix(":zeroshot")
    return f"{base}:zeroshot/{role}"


def hint_lines(sent: str, kept: str) -> list[str]:
    """The sentences a hinted prompt added to the row's prompt (``sent`` minus its start ``kept``), at
    least 6 characters each: a reply that repeats one gives the hint away and is no training row.

    >>> hint_lines("Q?\\n\\n提示：正确答案是 C。请写出推理过程。", "Q?"), hint_lines("Q?", "Q?")
    (['提示：正确答案是 C。', '请写出推理过程。'], [])
    """
    extra = sent[len(kept):] if sent.startswith(kept) else ""
    parts = re.split(r"(?<=[。.!?！？])|\n", extra)
    return [p.strip() for p in parts if len(p.strip()) >= 6]


def _replies(child: Trajectory) -> list[tuple[str, str, str]]:
    """``(reply, letter, parse)`` of every sample of a turn (one when it was not sampled); the reply
    ends with its first answer line (``pipeline.parse_choice``)."""
    if child.meta.get("samples"):
        return [(s["reply"], s["letter"], s["parse"]) for s in child.meta["samples"]]
    return [(child.steps[0].thought if child.steps else "", child.answer, child.meta.get("parse", ""))]


def role_rows(samples: Sequence[Sample], role: str, fmt: str, excluded: set[str],
              ) -> tuple[list[tuple[dict[str, Any], Sample]], Counter, dict[str, int]]:
    """Rows of ``role`` in ``fmt`` with the sample each came from, the drop reasons (per reply),
    and counts (``replies``, ``corrections``: Evaluate rows whose candidate was wrong)."""
    if fmt not in ROLE_FORMATS:
        raise ValueError(f"pipeline role rows come in {', '.join(ROLE_FORMATS)}, not {fmt!r}")
    rows: list[tuple[dict[str, Any], Sample]] = []
    dropped: Counter = Counter()
    counts: Counter = Counter()
    seen: set[tuple[str, str]] = set()
    for s in samples:
        t = s.traj
        child = next((c for c in t.children if c.agent == role), None)
        if t.agent != "pipeline" or child is None:
            dropped["not_pipeline" if t.agent != "pipeline" else f"no_{role}_turn"] += 1
            continue
        if normalize_question(t.question) in excluded:
            dropped["eval_overlap"] += 1
            continue
        sent: list[Message] = child.meta.get("train_messages") or child.meta["messages"]
        user = sent[-1]["content"]
        hint = hint_lines(child.meta["messages"][-1]["content"], user)
        candidate = next((c.answer for c in t.children if c.agent == "answer"), "")
        for raw, letter, how in _replies(child):
            counts["replies"] += 1
            if how != "strict":
                dropped["no_answer_line"] += 1
            elif letter != t.gold:
                dropped["incorrect"] += 1
            elif any(h in raw for h in hint):
                dropped["hint_leak"] += 1
            elif (user, raw) in seen:
                dropped["duplicate"] += 1
            else:
                seen.add((user, raw))
                rows.append((_row(fmt, user, raw.strip(), s.source, role_prompt_id(t, role), t.task, role), s))
                if role == "evaluate" and candidate != t.gold:
                    counts["corrections"] += 1
    return rows, dropped, {"replies": counts["replies"], "corrections": counts["corrections"]}


def _row(fmt: str, user: str, reply: str, source: str, prompt_id: str, task: str, role: str) -> dict[str, Any]:
    meta = {"source": source, "prompt_id": prompt_id, "task": task, "method": role}
    if fmt == "alpaca":
        return {"instruction": user, "input": "", "output": reply} | meta
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]} | meta
