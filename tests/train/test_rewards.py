"""Reward functions: hand-checked cases on both completion layouts (text and chat messages)."""

from __future__ import annotations

import pytest

from reactlab.config import load_config
from reactlab.train.recipes import GRPORecipe, RLOORecipe
from reactlab.train.rewards import (
    REWARDS,
    actions,
    answer_in_observation_reward,
    budget_reward,
    evidence_recall_reward,
    exact_match_reward,
    extract_number,
    f1_reward,
    final_answer,
    format_reward,
    graded_number_score,
    observations,
    opened_pages,
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
    assert set(REWARDS) == {"exact_match_reward", "f1_reward", "format_reward", "step_cost_reward", "budget_reward",
                            "evidence_recall_reward", "answer_in_observation_reward"}


# --- grounded rewards --------------------------------------------------------------------------------

Q = {"answer": ["Chief of Protocol"], "evidence": [["Kiss and Tell (1945 film)", "Shirley Temple"]]}
PAGE_K = "Observation: Kiss and Tell is a 1945 film starring Shirley Temple as Corliss Archer."
PAGE_S = "Observation: Shirley Temple was an actress who later served as Chief of Protocol of the United States."


def episode(*steps: tuple[str, str | None]) -> list[dict]:
    """A chat episode from ``(action, observation)`` steps (no observation after the last)."""
    msgs: list[dict] = []
    for act, obs in steps:
        msgs.append({"role": "assistant", "content": f"Thought: next.\nAction: {act}"})
        if obs is not None:
            msgs.append({"role": "user", "content": obs})
    return msgs


ANSWERER = episode(("search[Kiss and Tell (1945 film)]", PAGE_K), ("search[shirley temple]", PAGE_S),
                   ("finish[Chief of Protocol]", None))
MISS = "Observation: Could not find Corliss. Similar: ['Corliss Archer']."
OTHER = "Observation: Some other page."
# Opens both supporting pages (and more) to farm the grounded rewards, and never answers.
FARMER = episode(("search[Kiss and Tell (1945 film)]", PAGE_K), ("search[Shirley Temple]", PAGE_S),
                 ("search[Corliss Archer]", OTHER), ("search[Kiss and Tell (play)]", OTHER),
                 ("search[Corliss]", MISS), ("search[Temple]", None))
# The same, then a wrong answer.
FARMER_ANSWERS = [*FARMER[:-1], {"role": "assistant", "content": "Thought: so.\nAction: finish[Actress]"}]


def test_observations_and_opened_pages():
    assert observations(ANSWERER) == [PAGE_K[len("Observation: "):], PAGE_S[len("Observation: "):], None]
    assert opened_pages(ANSWERER) == ["Kiss and Tell (1945 film)", "shirley temple"]
    # A miss opens nothing, an invalid action neither; the last search has no observation yet.
    assert opened_pages(FARMER) == ["Kiss and Tell (1945 film)", "Shirley Temple", "Corliss Archer", "Kiss and Tell (play)"]
    assert opened_pages(episode(("search[X]", "Observation: Invalid action: search[X"), ("finish[a]", None))) == []
    text = ("Thought 1: a\nAction 1: Search[Shirley Temple]\nObservation 1: She served as Chief of Protocol.\n"
            "Thought 2: b\nAction 2: Finish[Chief of Protocol]")
    assert opened_pages(text) == ["Shirley Temple"]


def test_evidence_recall_reward_by_hand():
    one = episode(("search[Shirley Temple]", PAGE_S), ("finish[x]", None))
    miss = episode(("search[Shirley Templ]", MISS), ("finish[x]", None))
    comps = [ANSWERER, one, miss, FARMER, FARMER_ANSWERS, episode(("finish[x]", None))]
    got = evidence_recall_reward([], comps, **{"evidence": Q["evidence"] * len(comps)})
    # both pages; 1 of 2; none (a miss); the farmer never answers: 0; farmer then answers: 2 of 2; no search
    assert got == [1.0, 0.5, 0.0, 0.0, 1.0, 0.0]
    # FEVER-style evidence sets: the best set counts; no evidence recorded: 0
    sets = [[["A", "B"], ["Shirley Temple"]], []]
    assert evidence_recall_reward([], [one, one], evidence=sets) == [1.0, 0.0]
    with pytest.raises(ValueError, match="'evidence'"):
        evidence_recall_reward([], [one], answer=["x"])


def test_answer_in_observation_reward_by_hand():
    one_k = episode(("search[Kiss and Tell (1945 film)]", PAGE_K), ("finish[x]", None))
    comps = [ANSWERER, one_k, FARMER, FARMER_ANSWERS, episode(("finish[yes]", None))]
    golds = Q["answer"] * 4 + ["yes"]
    # PAGE_S holds the answer, PAGE_K does not; the farmer read it but never answered; a yes/no gold never counts
    assert answer_in_observation_reward([], comps, answer=golds) == [1.0, 0.0, 0.0, 1.0, 0.0]
    # aliases, and whole words only ("Protocols" is not "Protocol")
    words = episode(("search[S]", "Observation: the Protocols of Chief"), ("finish[x]", None))
    assert answer_in_observation_reward([], [ANSWERER, words], answer=[["Ambassador", "chief of protocol"], "Protocol"]) == [1.0, 0.0]


def total(weights: dict[str, float], completion: list[dict]) -> float:
    """The episode's reward as the trainer sums it: each recipe reward times its weight."""
    return sum(w * REWARDS[name]([], [completion], **{k: v for k, v in Q.items()})[0] for name, w in weights.items())


@pytest.mark.parametrize("name,cls", [("grpo_gpu_qwen2.5-0.5b", GRPORecipe), ("rloo_gpu_qwen2.5-0.5b", RLOORecipe)])
def test_farming_evidence_never_beats_answering(name, cls):
    """Under the GPU recipes' weights (which use the grounded rewards), the adversary that opens many
    pages, the supporting ones included, scores below the agent that answers, whether it then stops
    answering or answers; opening extra pages on top of an answer lowers the reward (step cost)."""
    weights = load_config(cls, [name]).rewards
    assert {"evidence_recall_reward", "answer_in_observation_reward", "f1_reward"} <= set(weights)
    answerer, farmer, farmer_answers = (total(weights, c) for c in (ANSWERER, FARMER, FARMER_ANSWERS))
    assert farmer < answerer and farmer_answers < answerer
    assert farmer < 0 < answerer  # not answering at all costs (steps) and earns nothing grounded
    padded = [*ANSWERER[:-1], {"role": "assistant", "content": "Action: search[Corliss Archer]"},
              {"role": "user", "content": OTHER}, ANSWERER[-1]]
    assert total(weights, padded) < answerer
