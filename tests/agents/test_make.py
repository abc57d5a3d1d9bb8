"""``make_agent``: each agent gets the run's keys it takes and its own options record, nothing else;
every agent declares its traits."""

from __future__ import annotations

import pytest

from reactlab.agents import AgentOptions, make_agent
from reactlab.agents.consistency import BackoffAgent, CoTSCAgent
from reactlab.agents.oracle import OracleAgent
from reactlab.agents.pipeline import PipelineAgent
from reactlab.agents.react import ReActAgent
from reactlab.agents.reflexion import ReflexionAgent
from reactlab.tasks import make_task
from reactlab.types import DEFAULT_ROLE, AgentTraits


def test_each_agent_gets_its_own_options():
    opts = AgentOptions.model_validate({"cot_sc": {"k": 3, "temperature": 0.5}, "reflexion": {"trials": 2},
                                        "pipeline": {"samples": 4}, "react": {"max_new_tokens": 64}})
    sc = make_agent("react", method="cot_sc", options=opts)
    assert isinstance(sc, CoTSCAgent) and (sc.k, sc.params.temperature, sc.params.n) == (3, 0.5, 3)
    back = make_agent("react", method="react_then_cot_sc", max_steps=2, options=opts)
    assert isinstance(back, BackoffAgent) and back.sc.k == 3 and back.react.max_steps == 2
    refl = make_agent("react", method="reflexion", task=make_task("hotpotqa"), options=opts)
    assert isinstance(refl, ReflexionAgent) and refl.trials == 2
    react = make_agent("react", method="act", temperature=0.7, options=opts)
    assert isinstance(react, ReActAgent) and (react.params.max_new_tokens, react.params.temperature) == (64, 0.7)
    pipe = make_agent("pipeline", task=make_task("logic_mcq"), method="answer", options=opts)
    assert isinstance(pipe, PipelineAgent) and pipe.samples == 4
    assert isinstance(make_agent("oracle", options=opts), OracleAgent)
    tools = make_agent("react", style="tools", options={"react": {"tools_system": "Call the tools."}})
    assert isinstance(tools, ReActAgent) and tools.system == "Call the tools." and tools.style == "tools"


def test_options_are_validated_where_the_agent_is_made():
    with pytest.raises(ValueError, match=r"cot_sc\.k"):
        make_agent("react", method="cot_sc", options={"cot_sc": {"k": 0}})
    with pytest.raises(ValueError, match="trialz"):
        make_agent("react", method="reflexion", options={"reflexion": {"trialz": 2}})
    with pytest.raises(TypeError):
        OracleAgent(None, sc_k=3)  # type: ignore[call-arg]  # no agent swallows another's options


def test_every_agent_declares_its_traits():
    agents = [make_agent("react"), make_agent("react", method="cot"), make_agent("react", method="cot_sc"),
              make_agent("oracle"), make_agent("pipeline", task=make_task("logic_mcq"))]
    assert all(isinstance(a.traits, AgentTraits) for a in agents)
    react, cot, sc, oracle, pipe = (a.traits for a in agents)
    assert react.samples_episodes and react.token_budgets and not cot.token_budgets and not sc.samples_episodes
    assert not oracle.needs_model and oracle.model == "oracle" and oracle.params is None
    assert pipe.roles == ("answer", "evaluate") and "candidate_accuracy" in pipe.metrics
    assert react.roles == (DEFAULT_ROLE,) and react.params == agents[0].params
