"""The runner hook: ``order_by=budget:PATH`` starts the predicted-longest episodes first, which
shortens the tail of a batched run, and changes no episode."""

from __future__ import annotations

import contextlib
import json

import pytest

from reactlab.budget.labels import BudgetRow, Question
from reactlab.budget.predictors import FeatureRegressor, Prediction, save_predictor
from reactlab.budget.schedule import for_run, longest_first
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
    from reactlab.config import RunConfig

    with pytest.raises(ValueError, match="expected budget:PATH"):
        for_run(RunConfig(out="o", order_by="longest"))
    assert for_run(RunConfig(out="o")) is None


class NoEnv:
    def reset(self, example):
        return example.question

    def step(self, action):
        return "Nothing here.", action.name == "finish"


@contextlib.contextmanager
def toy_task(name, exs, score):
    """A task ``name`` registered for the ``with`` block: ``exs`` as its one split ``s``, no environment."""
    from reactlab.tasks import TASKS

    class Toy:
        metrics, main_metric = ("em",), "em"
        splits, eval_splits, default_prompt = ("s",), (), "zeroshot"

        def examples(self, split, limit=None, seed=None, data=None):
            return exs

        def score(self, example, answer):
            return score(answer, example)

        def environments(self, examples, **kw):
            return contextlib.nullcontext(NoEnv)

    Toy.name = name
    TASKS[name] = Toy
    try:
        yield Toy
    finally:
        del TASKS[name]


def test_ordered_run_has_a_shorter_tail_and_the_same_answers(tmp_path):
    from reactlab.config import ModelRef, RunConfig
    from reactlab.llm.scripted import ScriptedLLM
    from reactlab.runner import run_from_config
    from reactlab.tasks.metrics import qa_scores

    qs = questions(40)
    rows = [BudgetRow(question=q, task="toy-budget", model="scripted", steps=s, bucket=0) for q, s, _ in qs]
    path = save_predictor(FeatureRegressor.fit(rows, [100]), tmp_path / "p")
    steps = {q: s for q, s, _ in qs}
    # 6 short episodes then a long one: in task order the long one runs alone at the end
    picked = [q for q, s, _ in qs if s == 2][:6] + [q for q, s, _ in qs if s == 5][:1]
    exs = [Example(id=f"q{i}", question=q, answer=f"a{i}") for i, q in enumerate(picked)]

    def reply(prompt):
        question = prompt[-1]["content"] if len(prompt) == 1 else next(m["content"] for m in prompt if m["role"] == "user")
        key = next(q for q in steps if q in question)
        done = sum(m["role"] == "assistant" for m in prompt)
        if done + 1 < steps[key]:
            return "Thought: more.\nAction: search[x]"
        return f"Thought: done.\nAction: finish[a{picked.index(key)}]"

    with toy_task("toy-budget", exs, lambda answer, ex: qa_scores(answer, ex.answer)):
        out, rounds = {}, {}
        for name, order in (("plain", None), ("ordered", f"budget:{path}")):
            llm = ScriptedLLM(reply)
            cfg = RunConfig(out=str(tmp_path / name), task="toy-budget", split="s", style="chat", batch_size=2,
                            model=ModelRef(name="scripted"), order_by=order)
            assert run_from_config(cfg, llms={"default": llm}, progress=False, schedule=for_run(cfg)).n == 7
            trajs = [json.loads(x) for x in (tmp_path / name / "trajectories.jsonl").read_text().splitlines()]
            out[name] = {t["id"]: (t["answer"], len(t["steps"])) for t in trajs}
            rounds[name] = len(llm.calls)
        assert out["ordered"] == out["plain"] and sorted(s for _, s in out["plain"].values()) == [2] * 6 + [5]
        assert rounds == {"plain": 6 + 5, "ordered": 9}  # 17 queries: 2 per round but for the tail


def test_question_carries_who_answers():
    q = Question("Q?", task="hotpotqa", agent="react", method="act", model="smollm2")
    assert (q.method, q.model, q.type) == ("act", "smollm2", "")


def test_the_react_agent_stops_at_its_token_budget():
    """Budget 8: step 1 may use 8 tokens and uses 6 (whitespace tokens of the scripted model), step 2
    gets the 2 left and is cut there, then the episode is closed as at the step limit."""
    from reactlab.agents.react import ReActAgent
    from reactlab.llm.scripted import ScriptedLLM

    llm = ScriptedLLM(lambda prompt: "Thought: look it up\nAction: search[x]")
    agent = ReActAgent(style="chat", prompt="zeroshot", max_steps=5)
    results = {}
    for budget in (8, None):
        ex = Example(id="q", question="Q?", answer="a", meta={} if budget is None else {"token_budget": budget})
        gen, sent = agent.episode(ex, NoEnv()), []
        q = next(gen)
        try:
            while True:
                sent.append(q.params.max_new_tokens)
                q = gen.send(llm.generate([q.prompt], q.params)[0])
        except StopIteration as stop:
            results[budget] = (stop.value, sent)
    traj, sent = results[8]
    assert sent == [8, 2] and [s.usage.completion_tokens for s in traj.steps] == [6, 2]
    assert traj.status == "max_steps" and traj.meta["stopped_by"] == "token_budget" and traj.meta["token_budget"] == 8
    free, sent = results[None]
    assert sent == [128] * 5 and "stopped_by" not in free.meta and free.status == "max_steps"


def test_a_run_gives_episodes_token_budgets_from_the_predictor(tmp_path):
    from reactlab.config import ModelRef, RunConfig
    from reactlab.llm.scripted import ScriptedLLM
    from reactlab.runner import run_from_config

    rows = [BudgetRow(question=q, task="toy-tokens", model="scripted", steps=s, tokens=t, bucket=int(s > 3))
            for q, s, t in questions(40)]
    path = save_predictor(FeatureRegressor.fit(rows, [5]), tmp_path / "p")  # bucket 0: < 5 tokens; 1: the top
    exs = [Example(id=f"q{i}", question=q, answer="a") for i, (q, _, _) in enumerate(questions(8))]

    with toy_task("toy-tokens", exs, lambda answer, ex: {"em": float(answer == ex.answer)}):
        def go(name, **keys):
            cfg = RunConfig(out=str(tmp_path / name), task="toy-tokens", split="s", style="chat", max_steps=3,
                            model=ModelRef(name="scripted"), **keys)
            llm = ScriptedLLM(lambda p: "Thought: one two three four\nAction: search[x]")
            run_from_config(cfg, llms={"default": llm}, progress=False, schedule=for_run(cfg))
            return {t["id"]: t for t in map(json.loads, (tmp_path / name / "trajectories.jsonl").read_text().splitlines())}

        capped = go("capped", token_budget=f"budget:{path}", token_budget_slack=2.0)
        asked = [Question(e.question, task="toy-tokens", model="scripted") for e in exs]
        predicted = {e.id: p.bucket for e, p in zip(exs, FeatureRegressor.fit(rows, [5]).predict(asked), strict=True)}
        assert set(predicted.values()) == {0, 1}
        for i, t in capped.items():
            if predicted[i] == 0:  # a budget of 2 x 5 tokens: 6 in step 1, step 2 cut to the 4 left, then stopped
                assert t["meta"]["token_budget"] == 10 and t["usage"]["completion_tokens"] == 10
                assert t["meta"]["stopped_by"] == "token_budget" and len(t["steps"]) == 2
            else:  # the top bucket has no upper edge: no budget
                assert "token_budget" not in t["meta"] and len(t["steps"]) == 3
        settings = json.loads((tmp_path / "capped" / "run.json").read_text())["settings"]
        assert settings["token_budget"]["slack"] == 2.0 and len(settings["token_budget"]["predictor_sha256"]) == 64
        with pytest.raises(ValueError, match="token_budget applies to --agent react with methods react, act"):
            go("cot", token_budget=f"budget:{path}", method="cot")


def test_a_run_refuses_order_by_without_its_schedule(tmp_path):
    """The runner never reads a predictor itself: ``order_by`` / ``token_budget`` with no ``Schedule``
    made from them is an error, not a silently unordered or unbudgeted run."""
    from reactlab.config import ModelRef, RunConfig
    from reactlab.runner import run_from_config

    for key in ("order_by", "token_budget"):
        cfg = RunConfig(out=str(tmp_path / key), split="eval", limit=1, model=ModelRef(name="scripted"),
                        **{key: "budget:nowhere"})
        with pytest.raises(ValueError, match=f"{key} 'budget:nowhere': no .* given for it"):
            run_from_config(cfg, progress=False)
