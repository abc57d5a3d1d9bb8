"""What the LLM predictor is asked, and how its answer is read: one chat prompt per target.

A question gets two prompts: ``steps`` (how many Thought/Action/Observation rounds) and ``tokens``
(which token bucket, the ranges listed). Each asks for one number; the answer is read with the
graded reward's own reader (``train.rewards.predicted_number``: the first number), so what the RL
trainers reward is exactly what prediction parses. Training targets are the bare number.

>>> q = Question("Who is older, A or B?", task="hotpotqa", model="smollm2+out/adapter")
>>> print(prompt(q, "tokens", [60, 120])[0]["content"])
A ReAct agent (react, method react, model smollm2+adapter) will answer this hotpotqa question.
Question: Who is older, A or B?
How many tokens will it generate in all? Answer with one bucket number: 0 (< 60), 1 (60-119), 2 (>= 120).
>>> read_answer("2 steps"), read_answer("I think it is 3 or 4"), read_answer("no idea")
(2, 3, None)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from reactlab.budget.labels import Question, bucket_range
from reactlab.types import Message

TARGETS = ("steps", "tokens")
PROMPT_ID = "budget@1"


def model_name(model: str) -> str:
    """A model label without paths: ``smollm2+/x/adapter`` -> ``smollm2+adapter``.

    >>> model_name("smollm2+runs/demo/adapter"), model_name("hf:/models/tiny"), model_name("")
    ('smollm2+adapter', 'tiny', 'unknown')
    """
    if not model:
        return "unknown"
    parts = [Path(p.split(":", 1)[-1].rstrip("/")).name or p for p in model.split("+")]
    return "+".join(parts)


def prompt(q: Question, target: str, edges: Sequence[int]) -> list[Message]:
    """The chat prompt asking ``q``'s ``target`` (``steps`` or ``tokens``)."""
    who = f"A ReAct agent ({q.agent}, method {q.method}, model {model_name(q.model)})"
    head = f"{who} will answer this {q.task + ' ' if q.task else ''}question.\nQuestion: {q.question}\n"
    if target == "steps":
        ask = "How many steps (Thought, Action, Observation rounds) will it take? Answer with one number."
    elif target == "tokens":
        choices = ", ".join(f"{b} ({bucket_range(b, edges)})" for b in range(len(edges) + 1))
        ask = f"How many tokens will it generate in all? Answer with one bucket number: {choices}."
    else:
        raise ValueError(f"unknown budget target {target!r}; known: {', '.join(TARGETS)}")
    return [{"role": "user", "content": head + ask}]


def read_answer(text: str) -> int | None:
    """The first number of an answer, rounded to an integer (None when there is none)."""
    from reactlab.train.rewards import predicted_number

    x = predicted_number(text)
    return None if x is None else int(round(x))
