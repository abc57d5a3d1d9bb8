"""Reward functions: hand-checked cases on both completion layouts (text and chat messages)."""

from __future__ import annotations

import pytest

from reactlab.train.rewards import (
    REWARDS,
    actions,
    budget_reward,
    exact_match_reward,
    extract_number,
    f1_reward,
    final_answer,
    format_reward,
    graded_number_score,
    predicted_number,
    step_cost_reward,
)


def chat(*turns: str) -> list[dict]:
    """Assistant turns with an observation (user turn) after each but the last."""
    msgs: list[dict] = []
    for i, t in enumerate(turns):
        msgs.append({"role": "assistant", "content": t})
        if i < len(turns) - 1:
            msgs.append({"role": "user", "content": f"Observation: obs {i}"})
    return msgs


TEXT_OK = ("Thought 1: I need X.\nAction 1: Search[Scott Derrickson]\nObservation 1: He is American.\n"
           "Thought 2: So yes.\nAction 2: Finish[yes]")
CHAT_OK = chat("Thought: I need X.\nAction: search[Scott Derrickson]", "Thought: So.\nAction: finish[Yes.]")


def test_actions_and_final_answer_on_both_layouts():
    assert [a.name for a in actions(TEXT_OK)] == ["search", "finish"]
    assert [a.name for a in actions(CHAT_OK)] == ["search", "finish"]
    assert final_answer(TEXT_OK) == "yes" and final_answer(CHAT_OK) == "Yes."
    # The observation turns never count as steps, and an answer only counts when it is the last action.
    assert final_answer(chat("Action: finish[a]", "Action: search[b]")) is None
    assert final_answer("finish[Paris]") == "Paris"  # a bare action is one step
    assert final_answer("") is None and final_answer([]) is None


def test_exact_match_and_f1():
    comps = [TEXT_OK, CHAT_OK, "Action 1: Finish[no]", "Action 1: Search[yes]", chat("Thought: hm")]
    gold = ["yes"] * len(comps)
    assert exact_match_reward([], comps, answer=gold) == [1.0, 1.0, 0.0, 0.0, 0.0]
    assert f1_reward([], comps, answer=gold) == [1.0, 1.0, 0.0, 0.0, 0.0]
    # F1 by hand: "the Eiffel Tower Paris" vs "Eiffel Tower": normalised 3 tokens vs 2, 2 shared:
    # P = 2/3, R = 1, F1 = 0.8.
    f = f1_reward([], ["Action 1: Finish[the Eiffel Tower Paris]"], answer=["Eiffel Tower"])
    assert f == [pytest.approx(0.8)]
    assert exact_match_reward([], ["Action 1: Finish[NYC]"], answer=[["New York City", "NYC"]]) == [1.0]  # aliases


def test_a_missing_gold_column_is_a_clear_error():
    with pytest.raises(ValueError, match="needs the dataset column 'answer'"):
        exact_match_reward([], [TEXT_OK], question=["q"])
    with pytest.raises(ValueError, match="'budget'"):
        budget_reward([], ["3"])


def test_format_reward_is_the_fraction_of_parsed_actions():
    comps = [TEXT_OK, chat("Thought: a\nAction: search[x]", "Thought: b\nAction: guess[y]", "Thought: c",
                           "Thought: d\nAction: finish[z]"),
             "I think the answer is 3", []]
    # chat: search ok, guess[] unknown action, no action line, finish ok -> 2/4
    assert format_reward([], comps) == [1.0, 0.5, 0.0, 0.0]


def test_step_cost():
    assert step_cost_reward([], [TEXT_OK, CHAT_OK, "finish[a]"]) == [pytest.approx(-0.1)] * 2 + [pytest.approx(-0.05)]
    assert step_cost_reward([], [TEXT_OK], step_cost=1.0) == [-2.0]
    assert all(r < 0 for r in step_cost_reward([], [TEXT_OK, "x"]))


@pytest.mark.parametrize(("text", "number"), [
    ("3 or 4 steps", 3), ("3-4 steps", 3), ("~200 tokens", 200), ("about 1,200 tokens", 1200),
    ("Budget: 7", 7), ("2.5 searches", 2.5), ("no number here", None), ("", None), ("gpt4 thinks 6", 6),
    ("It takes 12.", 12), ("(5)", 5),
])
def test_extract_number(text, number):
    assert extract_number(text) == number


def test_graded_number_score():
    # 12 exact, 6 within 1, 3 within 2, else 0; no number is 0.
    assert [graded_number_score(p, 10) for p in (10, 9, 11, 8, 12, 7, 13, 0, None)] == \
        [12, 6, 6, 3, 3, 0, 0, 0, 0]
    assert graded_number_score(10.5, 10) == 6 and graded_number_score(float("nan"), 1) == 0


def test_budget_reward_reads_the_finish_answer_or_the_text():
    comps = ["3 or 4 steps", "~200 tokens", "I cannot tell", chat("Thought: 2 lookups.\nAction: finish[4]"),
             [{"role": "assistant", "content": "About 6 steps."}]]
    assert predicted_number(comps[3]) == 4  # the answer, not the thought's "2"
    assert budget_reward([], comps, budget=[3, 202, 1, "5", 9]) == [12.0, 3.0, 0.0, 6.0, 0.0]


def test_rewards_by_name():
    assert set(REWARDS) == {"exact_match_reward", "f1_reward", "format_reward", "step_cost_reward", "budget_reward"}
