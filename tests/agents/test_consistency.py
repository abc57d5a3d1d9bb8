"""CoT self-consistency and the back-offs: votes, when each back-off fires, and that k samples of one
query are k seeded samples (the same vote as k separate generate calls)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from reactlab.agents import make_agent
from reactlab.agents.consistency import BackoffAgent, CoTSCAgent, majority
from reactlab.agents.react import ReActAgent, example_seed
from reactlab.envs.wikienv import WikiEnv
from reactlab.types import Completion, Example

EX = Example("q1", "Which magazine was started first, Arthur's Magazine or First for Women?", "Arthur's Magazine")


def cot(answer: str) -> Completion:
    return Completion(text=f" It says {answer}.\nAction: Finish[{answer}]")


def with_samples(answers):
    samples = [cot(a) for a in answers]
    return replace(samples[0], samples=samples)


def test_majority_vote_over_normalised_answers(vendored_index, drive):
    agent = CoTSCAgent(sc_k=5)
    t, qs = drive(agent, EX, WikiEnv(vendored_index),
                  lambda q: with_samples(["Arthur's Magazine", "First for Women", "arthurs magazine", "", "Arthur's magazine."]))
    (q,) = qs
    assert q.params.n == 5 and q.params.temperature == 0.7 and q.params.seed == example_seed("q1")
    assert q.prompt.endswith(f"Question: {EX.question}\nThought: Let's think step by step.")
    assert t.answer == "Arthur's Magazine" and t.meta == {"votes": 3, "k": 5} and t.method == "cot_sc"
    assert [c.answer for c in t.children] == ["Arthur's Magazine", "First for Women", "arthurs magazine", "",
                                              "Arthur's magazine."]
    assert t.steps[-1].action.name == "finish" and t.status == "finished"
    assert majority(["x", "y", "y", "x"]) == ("x", 2)  # a tie goes to the answer seen first


REACT_FINISH = " I know it.\nAction 1: Finish[Arthur's Magazine]"
REACT_SEARCH = " Search.\nAction 1: Search[Arthur's Magazine]"


@pytest.mark.parametrize("react_reply, backs_off", [(REACT_FINISH, False), (REACT_SEARCH, True)])
def test_react_then_cot_sc_backs_off_when_react_gives_no_answer(vendored_index, react_reply, backs_off, drive):
    agent = BackoffAgent(method="react_then_cot_sc", max_steps=2, sc_k=3)
    t, qs = drive(agent, EX, WikiEnv(vendored_index),
                  lambda q: with_samples(["First for Women"] * 3) if q.params.n == 3 else Completion(text=react_reply))
    assert t.meta["backed_off"] is backs_off and len(t.children) == 1 + backs_off
    assert t.answer == ("First for Women" if backs_off else "Arthur's Magazine")
    assert [q.params.n for q in qs].count(3) == backs_off and (qs[-1].params.n == 3) == backs_off


@pytest.mark.parametrize("votes, backs_off", [(["A", "A", "B", "C"], False), (["A", "B", "C", "A"], False),
                                              (["A", "B", "C", "D"], True)])
def test_cot_sc_then_react_backs_off_below_half_the_votes(vendored_index, votes, backs_off, drive):
    agent = BackoffAgent(method="cot_sc_then_react", sc_k=4)
    t, qs = drive(agent, EX, WikiEnv(vendored_index),
                  lambda q: with_samples(votes) if q.params.n == 4 else Completion(text=REACT_FINISH))
    assert t.meta["backed_off"] is backs_off
    assert t.answer == ("Arthur's Magazine" if backs_off else "A")
    assert [c.method for c in t.children] == (["cot_sc", "react"] if backs_off else ["cot_sc"])


def test_methods_are_chosen_by_name():
    assert isinstance(make_agent("react", method="cot_sc", options={"cot_sc": {"k": 3}}), CoTSCAgent)
    assert make_agent("react", method="cot_sc_then_react").method == "cot_sc_then_react"
    with pytest.raises(ValueError, match="cot_sc"):
        make_agent("react", method="cot-sc")


def test_k_samples_vote_like_k_separate_seeded_calls(tiny_model_dir):
    """One query with n = k through the engine gives the samples that k separate calls with seeds
    seed, seed + 1, ... give, so the vote is the same."""
    from reactlab.llm.hf import HFLLM

    llm = HFLLM(tiny_model_dir, batch_size=8)
    agent = CoTSCAgent(sc_k=4)
    q = agent.cot.cot_query(EX.question, replace(agent.params, seed=example_seed(EX.id), max_new_tokens=12))
    (together,) = llm.generate([q.prompt], q.params)
    apart = [llm.generate([q.prompt], replace(q.params, n=1, seed=q.params.seed + i))[0] for i in range(4)]
    assert [s.text for s in together.samples] == [c.text for c in apart]
    assert len({c.text for c in apart}) > 1  # they are samples, not four copies of one
    answers = [ReActAgent.cot_answer(c.text)[1].arg for c in apart]
    assert majority([ReActAgent.cot_answer(s.text)[1].arg for s in together.samples]) == majority(answers)
