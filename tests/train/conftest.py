"""Fixtures for training tests: a tiny random Llama on SmolLM2's tokenizer and a small ReAct dataset."""

from __future__ import annotations

import json

import pytest


@pytest.fixture(autouse=True)
def _train_on_one_thread(one_thread):
    """Every training test runs on one torch thread (``one_thread`` in tests/conftest.py)."""


@pytest.fixture(scope="session")
def tiny_dir(make_tiny) -> str:
    """A tiny random Llama with the usual init std: trains a step in well under a second on a CPU."""
    return make_tiny("llama", init_std=0.02)


def react_rows(n: int) -> list[dict]:
    """``n`` short FireAct-style conversations of varied lengths (2 or 3 assistant turns)."""
    rows = []
    for i in range(n):
        name = ["Paris", "Berlin", "Rome", "Madrid"][i % 4]
        msgs = [{"role": "user", "content": f"What is the capital of country number {i}?"},
                {"role": "assistant", "content": f"Thought: I need to search country {i}.\nAction: search[country {i}]"},
                {"role": "user", "content": f"Observation: Country {i} has {name} as its capital." + " More." * (i % 5)}]
        if i % 2:
            msgs += [{"role": "assistant", "content": f"Thought: Check {name}.\nAction: lookup[capital]"},
                     {"role": "user", "content": f"Observation: (Result 1 / 1) {name} is the capital."}]
        msgs.append({"role": "assistant", "content": f"Thought: So it is {name}.\nAction: finish[{name}]"})
        rows.append({"messages": msgs, "source": "test", "prompt_id": "messages:test@1"})
    return rows


@pytest.fixture(scope="session")
def react_data(tmp_path_factory) -> str:
    """A dataset dir as ``reactlab data build`` writes it: 16 train rows, 4 val rows (messages)."""
    d = tmp_path_factory.mktemp("sft-data")
    rows = react_rows(20)
    for name, part in (("train.jsonl", rows[:16]), ("val.jsonl", rows[16:])):
        (d / name).write_text("".join(json.dumps(r) + "\n" for r in part))
    return str(d)
