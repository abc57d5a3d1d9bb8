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
    if name not in AGENTS:
        raise ValueError(f"unknown agent {name!r}; known: {', '.join(sorted(AGENTS))}")
    module, cls = AGENTS[name].split(":")
    return getattr(importlib.import_module(module), cls)(**options)
