"""FireAct's multi-task and multi-method data: every row tagged with its task and method, mixes per
task and method, correctness by each task's own scorer, and rows that are what the agent sends."""

from __future__ import annotations

import json
from collections import Counter

from reactlab.agents.react import ReActAgent
from reactlab.data.build import build_dataset
from reactlab.data.formats import to_row
from reactlab.data.select import is_correct, mix
from reactlab.data.sources import Sample, load_source
from reactlab.tasks import make_task
from reactlab.types import Completion, Example, Trajectory


def test_fireact_files_are_tagged_by_task_and_method():
    multitask = load_source("fireact:multitask")
    assert Counter(s.traj.task for s in multitask) == {"hotpotqa": 500, "mmlu": 456, "strategyqa": 388}
    assert {s.traj.method for s in multitask} == {"react"}
    mm = load_source("fireact:multitask-multimethod")
    methods = Counter(s.traj.method for s in mm)
    assert methods["reflexion"] == 71 and methods["cot"] > 600 and methods["react"] > 900
    gpt = load_source("fireact:multitask-multimethod-gpt")
    assert Counter(s.traj.status for s in gpt)["error"] == 7  # malformed upstream rows, dropped and counted


def test_a_multitask_mix_builds_with_per_task_weights(tmp_path):
    stats = build_dataset(["fireact:multitask"], tmp_path / "d", "messages", mix_weights={"task:mmlu": 0.5},
                          tokenizer=None)
    rows = [json.loads(x) for f in ("train.jsonl", "val.jsonl") for x in (tmp_path / "d" / f).read_text().splitlines()]
    by_task = Counter(r["task"] for r in rows)
    assert set(by_task) == {"hotpotqa", "mmlu", "strategyqa"} and {r["method"] for r in rows} == {"react"}
    assert abs(by_task["mmlu"] - 456 / 2) <= 30  # half the multiple-choice rows (minus duplicates and eval overlap)
    assert stats["rows"]["train"] + stats["rows"]["val"] == len(rows)


def test_mix_by_method_multiplies_with_the_source_weight():
    samples = [Sample(Trajectory(str(i), "strategyqa", f"q{i}", "", "", "", "", method=m), "src", "")
               for i, m in enumerate(["react"] * 4 + ["cot"] * 4)]
    out = mix(samples, {"src": 0.5, "method:cot": 0.5}, seed=0)
    assert Counter(s.traj.method for s in out) == {"react": 2, "cot": 1}


def test_correct_by_the_tasks_own_scorer():
    def sample(task, gold, answer):
        return Sample(Trajectory("1", task, "q", gold, "", "", "", answer=answer), "s", "")

    assert is_correct(sample("strategyqa", "yes", "Yes, it is.")) is True
    assert is_correct(sample("mmlu", "B", "(b)")) is True and is_correct(sample("mmlu", "B", "A")) is False
    assert is_correct(sample("fever", "REFUTES", "refuted")) is True
    assert is_correct(sample("hotpotqa", "Paris", "the Paris")) is True


class ReplayEnv:
    """Gives back a trajectory's own observations, in order."""

    def __init__(self, traj: Trajectory) -> None:
        self.obs = [s.observation for s in traj.steps]

    def reset(self, example: Example) -> str:
        return example.question

    def step(self, action) -> tuple[str, bool]:
        return self.obs.pop(0), action.name == "finish"


def test_a_row_of_each_task_is_what_the_chat_agent_sends():
    from reactlab.agents.parsing import chat_assistant

    rows = load_source("fireact:multitask")
    for task in ("hotpotqa", "strategyqa", "mmlu"):
        traj = next(s.traj for s in rows if s.traj.task == task and len(s.traj.steps) >= 2)
        agent = ReActAgent(make_task(task), style="chat")
        gen = agent.episode(Example("x", traj.question, "?"), ReplayEnv(traj))
        replies = [chat_assistant(s.thought, s.action) for s in traj.steps]
        q, sent = next(gen), []
        try:
            while True:
                sent.append(q.prompt)
                q = gen.send(Completion(text=replies[len(sent) - 1]))
        except StopIteration:
            pass
        conversation = [*sent[-1], {"role": "assistant", "content": replies[-1]}]
        assert to_row("messages", traj)["messages"] == conversation, task
