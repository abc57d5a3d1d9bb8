"""Agents: the ReAct loop and its prompt variants, the oracle, and the Answer -> Evaluate pipeline. A plain dict maps names to classes."""

from __future__ import annotations

import importlib
from typing import Any

from reactlab.types import Agent

AGENTS: dict[str, str] = {
    "oracle": "reactlab.agents.oracle:OracleAgent",
    "pipeline": "reactlab.agents.pipeline:PipelineAgent",
    "react": "reactlab.agents.react:ReActAgent",
}


COMPOSED: dict[str, str] = {
    "cot_sc": "reactlab.agents.consistency:CoTSCAgent",
    "react_then_cot_sc": "reactlab.agents.consistency:BackoffAgent",
    "cot_sc_then_react": "reactlab.agents.consistency:BackoffAgent",
    "reflexion": "reactlab.agents.reflexion:ReflexionAgent",
}
"""Methods of the react agent that compose its episodes (self-consistency, back-offs, Reflexion), by class."""


def make_agent(name: str, **options: Any) -> Agent:
    """The agent called ``name``, built with ``options`` (``task``, ``method``, ``style``, ``prompt``,
    ``max_steps``, ``model``, ``sc_k``, ``sc_temperature``, ``trials``: what ``RunConfig`` holds)."""
    if name not in AGENTS:
        raise ValueError(f"unknown agent {name!r}; known: {', '.join(sorted(AGENTS))}")
    target = AGENTS[name]
    if name == "react" and options.get("method") in COMPOSED:
        target = COMPOSED[options["method"]]
    module, cls = target.split(":")
    agent: Agent = getattr(importlib.import_module(module), cls)(**options)
    return agent
