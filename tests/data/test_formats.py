"""SFT layouts: golden rows, and the rows equal what the agent shows a model during `run`."""

import json
import os
from pathlib import Path

import pytest

from reactlab.agents.parsing import chat_assistant
from reactlab.agents.react import ReActAgent
from reactlab.data import formats
from reactlab.data.preference import dpo_pair, kto_rows
from reactlab.data.prompts import prompt_row
from reactlab.data.sources import Sample, load_source
from reactlab.types import Action, Completion, Example, Step, Trajectory

GOLDEN = Path(__file__).parent / "golden"
EX = Example("q1", "Where was the director of Ed Wood (1994) born?", "Knoxville, Tennessee", "bridge")
STEPS = [
    Step(1, "I need to search Ed Wood (film).", Action("search", "Ed Wood (film)"),
         "Ed Wood is a 1994 American biographical film directed by Tim Burton."),
    Step(2, "Tim Burton directed it. I need to look up born.", Action("lookup", "born"),
         "(Result 1 / 1) Timothy Walter Burton (born August 25, 1958) was born in Burbank, California — “Tim”."),
    Step(3, "Oops.", Action("invalid", "Dance[now]"), "Invalid action: Dance[now]"),
    Step(4, "So the answer is Burbank, California.", Action("finish", "Burbank, California"), "Episode finished."),
]
TRAJ = Trajectory(id="q1", task="hotpotqa", question=EX.question, gold="Burbank, California", agent="react",
                  prompt_id="chat@1/react", model="scripted", steps=STEPS, answer="Burbank, California",
                  status="finished", scores={"em": 1.0, "f1": 1.0})
WRONG = Trajectory(**{**TRAJ.__dict__, "steps": STEPS[:2] + [Step(3, "So Knoxville.", Action("finish", "Knoxville"), "")],
                      "answer": "Knoxville", "scores": {"em": 0.0, "f1": 0.0}})


def golden(name, obj):
    path = GOLDEN / f"{name}.json"
    text = json.dumps(obj, ensure_ascii=False, indent=1) + "\n"
    if os.environ.get("REACTLAB_UPDATE_GOLDEN"):
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"{path} missing: run with REACTLAB_UPDATE_GOLDEN=1 and commit it"
    assert text == path.read_text(encoding="utf-8")


@pytest.mark.parametrize("fmt", formats.SFT_FORMATS)
def test_sft_layouts_golden(fmt):
    options = {"skip_invalid": True} if fmt == "openai" else {}
    golden(fmt, formats.to_row(fmt, TRAJ, "run-a", None if fmt == "completion" else "Answer with the tools.", **options))


def test_preference_and_prompt_rows_golden():
    a, b = Sample(TRAJ, "run-a", ""), Sample(WRONG, "run-b", "")
    golden("dpo", dpo_pair(a, b))
    golden("dpo_turn", dpo_pair(a, b, continuation="turn", system="Answer with the tools."))
    golden("kto", kto_rows([a, b])[0])
    golden("prompts", prompt_row(a, system="Answer with the tools."))


def test_sharegpt_human_observations_and_dataset_info():
    row = formats.to_sharegpt(TRAJ, observation_role="human")
    assert {c["from"] for c in row["conversations"][::2]} == {"human"}
    info = formats.dataset_info("sharegpt", "hp", {"train": "train.jsonl", "val": "val.jsonl"}, system=True)
    assert set(info) == {"hp", "hp_val"} and info["hp_val"]["file_name"] == "val.jsonl"
    assert info["hp"]["columns"] == {"messages": "conversations", "system": "system"}
    with pytest.raises(ValueError, match="observation_role"):
        formats.to_sharegpt(TRAJ, observation_role="tool")


class FakeEnv:
    """Observations from a list; finish ends the episode, as WikiEnv's does."""

    def __init__(self, observations):
        self.observations = list(observations)

    def reset(self, example):
        return example.question

    def step(self, action):
        if action.name == "finish":
            return "Episode finished.", True
        return self.observations.pop(0), False


def drive(agent, replies, observations):
    gen, queries = agent.episode(EX, FakeEnv(observations)), []
    try:
        q = next(gen)
        while True:
            queries.append(q)
            q = gen.send(Completion(text=replies.pop(0)))
    except StopIteration as stop:
        return stop.value, queries


def test_messages_are_byte_identical_to_what_the_chat_agent_sends(write_run):
    system = "Answer with the tools."
    agent = ReActAgent(style="chat", system=system, model="scripted")
    # the model's raw spellings differ from the rendered ones (case, spacing): the agent re-renders them
    replies = ["Thought: I need to search Ed Wood (film).\nAction: Search[Ed Wood (film)]",
               "Thought: Tim Burton directed it. I need to look up born.\nAction:  lookup[born]",
               "Dance[now]",
               "Thought: So the answer is Burbank, California.\nAction: finish[Burbank, California]"]
    traj, queries = drive(agent, replies, [s.observation for s in STEPS[:3]])
    assert traj.status == "finished" and len(queries) == 4
    # the trajectory goes through a run dir, as `reactlab data build --from RUN` reads it
    (sample,) = load_source(str(write_run("chat", [traj])))
    row = formats.to_messages(sample.traj, sample.source, system)
    sent = [json.dumps(q.prompt, ensure_ascii=False) for q in queries]
    for q, s in zip(queries, sent, strict=True):  # every query is a prefix of the row, byte for byte
        assert json.dumps(row["messages"][: len(q.prompt)], ensure_ascii=False) == s
    assert row["messages"][:-1] == queries[-1].prompt
    assert row["messages"][-1] == {"role": "assistant", "content": chat_assistant(traj.steps[-1].thought, traj.steps[-1].action)}
    assert row["prompt_id"] == agent.prompt_id == "chat@1/react"


def test_completion_row_continues_the_papers_prompt():
    agent = ReActAgent(style="completion", model="scripted")
    replies = [" I need to search Ed Wood (film).\nAction 1: Search[Ed Wood (film)]",
               " Tim Burton directed it. I need to look up born.\nAction 2: Lookup[born]",
               " So the answer is Burbank, California.\nAction 3: Finish[Burbank, California]"]
    traj, queries = drive(agent, list(replies), [s.observation for s in STEPS[:2]])
    row = formats.to_completion(traj)
    text = row["prompt"] + row["completion"]
    for q in queries:  # the zero-shot row is the agent's prompt without the few-shot prefix
        assert q.prompt.startswith(agent.prefix)
        assert text.startswith(q.prompt[len(agent.prefix):])
    assert text == queries[-1].prompt[len(agent.prefix):] + replies[-1]
