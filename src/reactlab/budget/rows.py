"""Training rows for the LLM predictor, in the columns the existing trainers read: ``sft``,
``prompts`` (GRPO / RLOO under ``budget_reward``), ``dpo`` and ``kto`` (the exact number against a far
one). Wrong numbers are drawn with a generator seeded by the question, so a rebuild writes the same
rows; ``test`` rows (evaluation questions) are never used.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reactlab.budget.labels import BudgetData, BudgetRow
from reactlab.budget.prompts import PROMPT_ID, prompt
from reactlab.io import write_jsonl_atomic

FORMATS = ("sft", "prompts", "dpo", "kto")
FORMAT_OF = {"sft": "sft", "grpo": "prompts", "rloo": "prompts", "dpo": "dpo", "kto": "kto"}
"""The rows each training method reads."""


def far_value(gold: int, lo: int, hi: int, rng: random.Random) -> int:
    """A wrong number in ``[lo, hi]``: one more than 2 away from ``gold`` when there is one (drawn
    with ``rng``), else the farthest.

    >>> far_value(2, 0, 4, random.Random(0)) in (0, 4), far_value(0, 0, 4, random.Random(0)) in (3, 4)
    (True, True)
    """
    far = [v for v in range(lo, hi + 1) if abs(v - gold) > 2]
    if far:
        return rng.choice(far)
    cand = [v for v in range(lo, hi + 1) if v != gold] or [gold + 3]
    best = max(abs(v - gold) for v in cand)
    return rng.choice([v for v in cand if abs(v - gold) == best])


def _targets(r: BudgetRow) -> list[tuple[str, int]]:
    return [("steps", r.steps)] + ([("tokens", r.bucket)] if r.bucket is not None else [])


def _rng(r: BudgetRow, target: str) -> random.Random:
    return random.Random(hashlib.sha256(f"{r.question}|{r.model}|{r.method}|{target}".encode()).hexdigest())


def rows_for(data: BudgetData, rows: Sequence[BudgetRow], fmt: str) -> list[dict[str, Any]]:
    """The ``fmt`` rows (module docstring) of ``rows``, labelled with ``data``'s edges and ranges."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown row format {fmt!r}; known: {', '.join(FORMATS)}")
    steps_hi = max((r.steps for r in data.rows["train"]), default=7) + 2
    ranges = {"steps": (1, steps_hi), "tokens": (0, len(data.edges))}
    out: list[dict[str, Any]] = []
    for r in rows:
        for target, gold in _targets(r):
            p = prompt(r, target, data.edges)
            meta = {"source": r.source, "prompt_id": f"{PROMPT_ID}/{target}"}
            answer = [{"role": "assistant", "content": str(gold)}]
            if fmt == "sft":
                out.append({"messages": p + answer} | meta)
            elif fmt == "prompts":
                out.append({"prompt": p, "budget": gold} | meta)
            else:
                wrong = [{"role": "assistant", "content": str(far_value(gold, *ranges[target], _rng(r, target)))}]
                if fmt == "dpo":
                    out.append({"prompt": p, "chosen": answer, "rejected": wrong} | meta)
                else:
                    out += [{"prompt": p, "completion": answer, "label": True} | meta,
                            {"prompt": p, "completion": wrong, "label": False} | meta]
    return out


def write_rows(data: BudgetData, fmt: str, out: str | Path) -> dict[str, int]:
    """``out/train.jsonl`` (+ ``val.jsonl`` except for ``prompts``: RL has no eval set) of ``fmt``
    rows, written atomically; returns the row counts."""
    out = Path(out)
    counts = {}
    for split in ("train", "val") if fmt != "prompts" else ("train",):
        rows = rows_for(data, data.rows[split], fmt)
        write_jsonl_atomic(out / f"{split}.jsonl", rows)
        counts[split] = len(rows)
    if not counts["train"]:
        raise ValueError(f"{out}: the budget dataset has no training rows")
    return counts
