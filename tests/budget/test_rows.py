"""Training rows for the LLM predictor: the columns the trainers read, gold numbers that the graded
reward scores 12, far numbers it scores 0, no test (evaluation) row ever."""

from __future__ import annotations

import json

from reactlab.budget.labels import load_budget
from reactlab.budget.rows import rows_for, write_rows
from reactlab.train.rewards import budget_reward


def test_sft_rows_answer_each_target_with_the_label(budget_dir):
    data = load_budget(budget_dir)
    r = data.rows["train"][0]
    rows = rows_for(data, [r], "sft")
    assert [x["prompt_id"] for x in rows] == ["budget@1/steps", "budget@1/tokens"]
    assert [x["messages"][-1] for x in rows] == [{"role": "assistant", "content": str(r.steps)},
                                                 {"role": "assistant", "content": str(r.bucket)}]
    assert r.question in rows[0]["messages"][0]["content"] and "How many steps" in rows[0]["messages"][0]["content"]


def test_prompt_rows_are_scored_by_the_graded_reward(budget_dir):
    data = load_budget(budget_dir)
    rows = rows_for(data, data.rows["train"], "prompts")
    gold = [[{"role": "assistant", "content": str(x["budget"])}] for x in rows]
    off_by_one = [[{"role": "assistant", "content": str(x["budget"] + 1)}] for x in rows]
    assert set(budget_reward(None, gold, budget=[x["budget"] for x in rows])) == {12.0}
    assert set(budget_reward(None, off_by_one, budget=[x["budget"] for x in rows])) == {6.0}


def test_preference_rows_prefer_the_exact_number_to_a_far_one(budget_dir):
    data = load_budget(budget_dir)
    dpo = rows_for(data, data.rows["train"], "dpo")
    golds = [int(x["chosen"][0]["content"]) for x in dpo]
    chosen = budget_reward(None, [x["chosen"] for x in dpo], budget=golds)
    rejected = budget_reward(None, [x["rejected"] for x in dpo], budget=golds)
    assert set(chosen) == {12.0} and max(rejected) <= 3.0 and rejected.count(0.0) > len(dpo) / 2
    kto = rows_for(data, data.rows["train"], "kto")
    assert [x["label"] for x in kto[:2]] == [True, False] and len(kto) == 2 * len(dpo)
    assert rows_for(data, data.rows["train"], "dpo") == dpo  # seeded by the question: a rebuild is the same


def test_written_rows_never_hold_a_test_question(budget_dir, tmp_path):
    from reactlab.budget.labels import BudgetRow

    data = load_budget(budget_dir)
    data.rows["test"] = [BudgetRow(question="An evaluation question?", steps=2, bucket=0, split="test")]
    counts = write_rows(data, "sft", tmp_path)
    text = (tmp_path / "train.jsonl").read_text() + (tmp_path / "val.jsonl").read_text()
    assert "An evaluation question?" not in text and counts["train"] == len(text.splitlines()) - counts["val"]
    assert all("messages" in json.loads(x) for x in text.splitlines())
