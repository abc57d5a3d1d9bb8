"""Agents: the ReAct loop and its prompt variants, the oracle, and the Answer -> Evaluate pipeline."""

from reactlab.agents.make import AGENTS, COMPOSED, AgentOptions, make_agent

__all__ = ["AGENTS", "COMPOSED", "AgentOptions", "make_agent"]
