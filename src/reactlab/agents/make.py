"""Building an agent by name: the run's own keys (task, method, style, prompt, step limit, model,
temperature) plus the options record of that agent, and nothing of the others'."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from reactlab.agents.consistency import BackoffAgent, CoTSCAgent, CoTSCOptions
from reactlab.agents.oracle import OracleAgent, OracleOptions
from reactlab.agents.pipeline import PipelineAgent, PipelineOptions
from reactlab.agents.react import ReActAgent, ReActOptions
from reactlab.agents.reflexion import ReflexionAgent, ReflexionOptions
from reactlab.types import Agent, Task

AGENTS = ("oracle", "pipeline", "react")
COMPOSED = ("cot_sc", "react_then_cot_sc", "cot_sc_then_react", "reflexion")
"""Methods of the react agent that compose its episodes (self-consistency, back-offs, Reflexion)."""


class AgentOptions(BaseModel):
    """Every agent's own options, one record each (``RunConfig.options``); an agent gets only its own."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    react: ReActOptions = Field(default_factory=ReActOptions)
    cot_sc: CoTSCOptions = Field(default_factory=CoTSCOptions)
    reflexion: ReflexionOptions = Field(default_factory=ReflexionOptions)
    pipeline: PipelineOptions = Field(default_factory=PipelineOptions)
    oracle: OracleOptions = Field(default_factory=OracleOptions)


def make_agent(
    name: str, *, task: Task | None = None, method: str | None = None, style: str = "completion",
    prompt: str | None = None, max_steps: int = 7, model: str = "", temperature: float = 0.0,
    options: AgentOptions | Mapping[str, Any] | None = None,
) -> Agent:
    """The agent called ``name`` (``method``: its variant; None: its default). ``temperature``:
    the react agent's sampled steps (0: greedy). ``options``: an ``AgentOptions`` or its mapping,
    validated here."""
    opts = options if isinstance(options, AgentOptions) else AgentOptions.model_validate(dict(options or {}))
    if name not in AGENTS:
        raise ValueError(f"unknown agent {name!r}; known: {', '.join(AGENTS)}")
    if name == "oracle":
        return OracleAgent(task)
    if name == "pipeline":
        p = opts.pipeline
        return PipelineAgent(task, method=method or "answer_evaluate", prompt=prompt, model=model, samples=p.samples,
                             temperature=p.temperature, hint=p.hint, zeroshot=p.zeroshot)
    method = method or "react"
    if method == "cot_sc":
        return CoTSCAgent(task, sc_k=opts.cot_sc.k, sc_temperature=opts.cot_sc.temperature, style=style,
                          prompt=prompt, model=model)
    if method in ("react_then_cot_sc", "cot_sc_then_react"):
        return BackoffAgent(task, method=method, max_steps=max_steps, style=style, prompt=prompt, model=model,
                            sc_k=opts.cot_sc.k, sc_temperature=opts.cot_sc.temperature)
    if method == "reflexion":
        return ReflexionAgent(task, trials=opts.reflexion.trials, style=style, prompt=prompt, max_steps=max_steps,
                              model=model)
    return ReActAgent(task, method=method, style=style, prompt=prompt, max_steps=max_steps, model=model,
                      episode_temperature=temperature, max_new_tokens=opts.react.max_new_tokens,
                      tools_system=opts.react.tools_system)
