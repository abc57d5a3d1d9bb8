"""Agents: the ReAct loop and its prompt variants, and the oracle. A plain dict maps names to classes."""

from __future__ import annotations

import importlib
from typing import Any

from reactlab.types import Agent

AGENTS: dict[str, str] = {
    "oracle": "reactlab.agents.oracle:OracleAgent",
    "react": "reactlab.agents.react:ReActAgent",
}


def make_agent(name: str, **options: Any) -> Agent:
    """The agent called ``name``, built with ``options`` (``task``, ``method``, ``style``, ``prompt``,
    ``max_steps``, ``model``: what ``RunConfig`` holds)."""
    if name not in AGENTS:
        raise ValueError(f"unknown agent {name!r}; known: {', '.join(sorted(AGENTS))}")
    module, cls = AGENTS[name].split(":")
    agent: Agent = getattr(importlib.import_module(module), cls)(**options)
    return agent
