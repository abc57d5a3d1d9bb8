"""Preference rows in TRL's conversational columns: DPO ``prompt/chosen/rejected`` and KTO
``prompt/completion/label``.

DPO pairs a correct, finished trajectory with an incorrect one of the same question: ``prompt`` is
the messages they share, ``chosen`` / ``rejected`` the continuations from the first turn where they
differ (the rest, or that one turn). KTO labels every trajectory on its own.
"""

from __future__ import annotations

import random
from collections import Counter
from itertools import product
from typing import Any

from reactlab.data.formats import chat_messages, layout_id
from reactlab.data.select import is_correct, normalize_question
from reactlab.data.sources import Sample
from reactlab.types import Message


def _messages(s: Sample, system: str | None) -> list[Message]:
    msgs = chat_messages(s.traj, system)
    while msgs and msgs[-1]["role"] != "assistant":  # a step-limited run ends on an observation
        msgs.pop()
    return msgs


def _good(s: Sample, min_f1: float | None) -> bool:
    return bool(is_correct(s, min_f1)) and s.traj.status == "finished" and s.traj.steps[-1].action.name == "finish"


def dpo_pair(chosen: Sample, rejected: Sample, system: str | None = None,
             continuation: str = "full") -> dict[str, Any] | str:
    """One DPO row from two trajectories of a question, or the reason there is none
    (``no_divergence``, ``diverge_at_observation``).

    >>> from reactlab.types import Action, Step, Trajectory
    >>> def t(ans): return Sample(Trajectory("1", "", "Q?", "y", "react", "", "", answer=ans, steps=[
    ...     Step(1, "Go.", Action("search", "X"), "X is y."), Step(2, "So.", Action("finish", ans), "")]), "run", "")
    >>> row = dpo_pair(t("y"), t("z"))
    >>> len(row["prompt"]), row["chosen"][0]["content"], row["rejected"][0]["content"]
    (3, 'Thought: So.\\nAction: finish[y]', 'Thought: So.\\nAction: finish[z]')
    """
    if continuation not in ("full", "turn"):
        raise ValueError(f"continuation must be 'full' or 'turn', not {continuation!r}")
    cm, rm = _messages(chosen, system), _messages(rejected, system)
    k = next((i for i, (a, b) in enumerate(zip(cm, rm, strict=False)) if a != b), min(len(cm), len(rm)))
    if k >= len(cm) or k >= len(rm):
        return "no_divergence"
    if cm[k]["role"] != "assistant" or rm[k]["role"] != "assistant":
        return "diverge_at_observation"
    end = None if continuation == "full" else k + 1
    source = chosen.source if chosen.source == rejected.source else f"{chosen.source}+{rejected.source}"
    return {"prompt": cm[:k], "chosen": cm[k:end], "rejected": rm[k:end], "source": source,
            "prompt_id": layout_id("messages", chosen.traj)}


def pairing(samples: list[Sample], min_f1: float | None = None) -> dict[str, Any]:
    """How the questions of ``samples`` split for preference data: ``questions``, ``mixed`` (some
    trajectory right and finished, some wrong: DPO pairs can come only from these), ``all_right``,
    ``all_wrong``, and ``per_question`` (trajectories per question: how many -> questions).

    >>> from reactlab.types import Action, Step, Trajectory
    >>> def t(q, ans): return Sample(Trajectory("1", "", q, "y", "react", "", "", answer=ans, steps=[
    ...     Step(1, "So.", Action("finish", ans), "")]), "run", "")
    >>> p = pairing([t("A?", "y"), t("A?", "n"), t("B?", "n")])
    >>> p["mixed"], p["all_wrong"], p["per_question"]
    (1, 1, {1: 1, 2: 1})
    """
    groups: dict[str, list[Sample]] = {}
    for s in samples:
        groups.setdefault(normalize_question(s.traj.question), []).append(s)
    kinds: Counter = Counter()
    for group in groups.values():
        good = sum(_good(s, min_f1) for s in group)
        bad = sum(not is_correct(s, min_f1) for s in group)
        kinds["mixed" if good and bad else "all_right" if good else "all_wrong"] += 1
    return {"questions": len(groups), "mixed": kinds["mixed"], "all_right": kinds["all_right"],
            "all_wrong": kinds["all_wrong"],
            "per_question": dict(sorted(Counter(len(g) for g in groups.values()).items()))}


def dpo_rows(samples: list[Sample], system: str | None = None, continuation: str = "full",
             pairs_per_question: int = 1, min_f1: float | None = None, seed: int = 0
             ) -> tuple[list[dict[str, Any]], Counter]:
    """DPO rows: per question (normalised text, in first-seen order) up to ``pairs_per_question``
    distinct pairs of (correct finished, incorrect) trajectories, picked with ``seed``. Returns the
    rows and a ``Counter`` of trajectories or pairs left out, by reason."""
    groups: dict[str, list[Sample]] = {}
    for s in samples:
        groups.setdefault(normalize_question(s.traj.question), []).append(s)
    rows: list[dict[str, Any]] = []
    dropped: Counter = Counter()
    for key, group in groups.items():
        good = [s for s in group if _good(s, min_f1)]
        bad = [s for s in group if not is_correct(s, min_f1)]
        if not good or not bad:
            dropped["unpaired"] += len(group)
            continue
        pairs = list(product(good, bad))
        random.Random(f"{seed}:{key}").shuffle(pairs)
        seen: set[str] = set()
        for c, r in pairs:
            row = dpo_pair(c, r, system, continuation)
            if isinstance(row, str):
                dropped[row] += 1
                continue
            ident = repr((row["prompt"], row["chosen"], row["rejected"]))
            if ident in seen:
                continue
            seen.add(ident)
            rows.append(row)
            if len(seen) >= pairs_per_question:
                break
    return rows, dropped


def kto_rows(samples: list[Sample], system: str | None = None, min_f1: float | None = None
             ) -> tuple[list[dict[str, Any]], Counter]:
    """KTO rows (``prompt``, ``completion``, ``label``), one per distinct (question, completion).

    >>> from reactlab.types import Action, Step, Trajectory
    >>> s = Sample(Trajectory("1", "", "Q?", "y", "react", "", "", answer="z", steps=[
    ...     Step(1, "So.", Action("finish", "z"), "")]), "run", "")
    >>> row = kto_rows([s])[0][0]
    >>> row["prompt"], row["completion"][0]["content"], row["label"]
    ([{'role': 'user', 'content': 'Q?'}], 'Thought: So.\\nAction: finish[z]', False)
    """
    rows: list[dict[str, Any]] = []
    dropped: Counter = Counter()
    seen: set[str] = set()
    head = 2 if system else 1
    for s in samples:
        msgs = _messages(s, system)
        if len(msgs) <= head:
            dropped["no_steps"] += 1
            continue
        ident = repr((normalize_question(s.traj.question), msgs[head:]))
        if ident in seen:
            dropped["duplicate"] += 1
            continue
        seen.add(ident)
        label = _good(s, min_f1)
        rows.append({"prompt": msgs[:head], "completion": msgs[head:], "label": label, "source": s.source,
                     "prompt_id": layout_id("messages", s.traj)})
    return rows, dropped
