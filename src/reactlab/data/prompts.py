"""Prompt-only rows for online RL (TRL GRPO / RLOO): ``prompt`` messages plus the gold ``answer``.

``prompt`` is the first turn of the chat agent's conversation ([system] + user question), exactly
what ``ReActAgent(style="chat")`` sends first; ``answer`` is the column a reward function receives
as a keyword argument (TRL passes every extra column to reward functions), as are ``source`` and
``prompt_id``, which reward functions ignore.
"""

from __future__ import annotations

from typing import Any

from reactlab.data.formats import layout_id
from reactlab.data.sources import Sample


def prompt_row(sample: Sample, system: str | None = None) -> dict[str, Any]:
    """One GRPO/RLOO row.

    >>> from reactlab.types import Trajectory
    >>> prompt_row(Sample(Trajectory("1", "hotpotqa", "Q?", "y", "none", "", ""), "hotpotqa:train", ""))
    {'prompt': [{'role': 'user', 'content': 'Q?'}], 'answer': 'y', 'source': 'hotpotqa:train', 'prompt_id': 'chat@1/react', 'evidence': []}
    """
    t = sample.traj
    prompt = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": t.question}]
    row = {"prompt": prompt, "answer": t.gold, "source": sample.source, "prompt_id": layout_id("prompts", t)}
    # the oracle's supporting pages, the column of ``evidence_recall_reward``: on every row (empty
    # where a source has none), so rows of several sources make one table
    return row | {"evidence": list(t.meta.get("supporting_titles") or [])}
