"""The runner hook: ``order_by=budget:PATH`` starts the predicted-longest episodes first, which
shortens the tail of a batched run, and changes no episode."""

from __future__ import annotations

import contextlib
import json

import pytest

from reactlab.budget.labels import BudgetRow, Question
from reactlab.budget.predictors import FeatureRegressor, Prediction, save_predictor
from reactlab.budget.schedule import longest_first, order_examples
from reactlab.types import Example

from .conftest import questions


class Fixed:
    kind, edges = "fixed", [10]

    def __init__(self, steps):
        self.steps = steps

    def predict(self, qs):
        return [Prediction(self.steps[q.question], 0) for q in qs]


def test_longest_first_is_a_stable_sort_on_predicted_steps():
    exs = [Example(id=str(i), question=q, answer="") for i, q in enumerate("abcd")]
    got = longest_first(exs, Fixed({"a": 2, "b": 5, "c": 2, "d": 5}), task="t", agent="react", method="react", model="m")
    assert [e.id for e in got] == ["1", "3", "0", "2"]
    with pytest.raises(ValueError, match="expected budget:PATH"):
        order_examples(exs, "longest", task="t", agent="react", method="react", model="m")


class NoEnv:
    def reset(self, example):
        return example.question

    def step(self, action):
        return "Nothing here.", action.name == "finish"


def test_ordered_run_has_a_shorter_tail_and_the_same_answers(tmp_path):
    from reactlab.config import ModelRef, RunConfig
    from reactlab.llm.scripted import ScriptedLLM
    from reactlab.runner import run_from_config
    from reactlab.tasks import TASKS
    from reactlab.tasks.metrics import qa_scores

    qs = questions(40)
    rows = [BudgetRow(question=q, task="toy-budget", model="scripted", steps=s, bucket=0) for q, s, _ in qs]
    path = save_predictor(FeatureRegressor.fit(rows, [100]), tmp_path / "p")
    steps = {q: s for q, s, _ in qs}
    # 6 short episodes then a long one: in task order the long one runs alone at the end
    picked = [q for q, s, _ in qs if s == 2][:6] + [q for q, s, _ in qs if s == 5][:1]
    exs = [Example(id=f"q{i}", question=q, answer=f"a{i}") for i, q in enumerate(picked)]

    class Toy:
        name, metrics, main_metric = "toy-budget", ("em",), "em"
        splits, eval_splits, default_prompt = ("s",), (), "zeroshot"

        def examples(self, split, limit=None, seed=None, data=None):
            return exs

        def score(self, example, answer):
            return qa_scores(answer, example.answer)

        def environments(self, examples, **kw):
            return contextlib.nullcontext(NoEnv)

    def reply(prompt):
        question = prompt[-1]["content"] if len(prompt) == 1 else next(m["content"] for m in prompt if m["role"] == "user")
        key = next(q for q in steps if q in question)
        done = sum(m["role"] == "assistant" for m in prompt)
        if done + 1 < steps[key]:
            return "Thought: more.\nAction: search[x]"
        return f"Thought: done.\nAction: finish[a{picked.index(key)}]"

    TASKS["toy-budget"] = Toy
    try:
        out, rounds = {}, {}
        for name, order in (("plain", None), ("ordered", f"budget:{path}")):
            llm = ScriptedLLM(reply)
            cfg = RunConfig(out=str(tmp_path / name), task="toy-budget", split="s", style="chat", batch_size=2,
                            model=ModelRef(name="scripted"), order_by=order)
            assert run_from_config(cfg, llms={"default": llm}, progress=False).n == 7
            trajs = [json.loads(x) for x in (tmp_path / name / "trajectories.jsonl").read_text().splitlines()]
            out[name] = {t["id"]: (t["answer"], len(t["steps"])) for t in trajs}
            rounds[name] = len(llm.calls)
        assert out["ordered"] == out["plain"] and sorted(s for _, s in out["plain"].values()) == [2] * 6 + [5]
        assert rounds == {"plain": 6 + 5, "ordered": 9}  # 17 queries: 2 per round but for the tail
    finally:
        del TASKS["toy-budget"]


def test_question_carries_who_answers():
    q = Question("Q?", task="hotpotqa", agent="react", method="act", model="smollm2")
    assert (q.method, q.model, q.type) == ("act", "smollm2", "")
