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


# --- tool rows (native function calling) -----------------------------------------------------------

VALID = Trajectory(**{**TRAJ.__dict__, "steps": [s for s in STEPS if s.action.name != "invalid"]})


def _same_steps(back, steps):
    """The steps read back from a row: thought, action and observation of each, the last observation
    empty (a row ends with the last call; formats' module doc)."""
    want = [(s.thought, s.action, s.observation) for s in steps]
    want[-1] = (*want[-1][:2], "")
    return [(s.thought, s.action, s.observation) for s in back] == want


@pytest.mark.parametrize("fmt", formats.TOOL_FORMATS)
def test_tool_rows_round_trip_to_the_same_steps_and_text_rows(fmt):
    from reactlab.agents.tools import messages_to_steps

    row = json.loads(json.dumps(formats.to_row(fmt, VALID, "run-a", "Answer with the tools.")))  # as read from JSONL
    msgs = formats.tool_row_messages(row)
    assert msgs[0] == {"role": "system", "content": "Answer with the tools."} and msgs[1]["content"] == VALID.question
    back = messages_to_steps(msgs)
    assert _same_steps(back, VALID.steps)
    # text row -> tool row -> steps -> text row: the same text row
    again = Trajectory(**{**VALID.__dict__, "steps": back})
    for text_fmt in ("messages", "completion", "sharegpt", "openai"):
        system = None if text_fmt == "completion" else "S"
        assert formats.to_row(text_fmt, again, "run-a", system) == formats.to_row(text_fmt, VALID, "run-a", system)
    # the tools offered are the actions' schemas; the calls name only those
    names = [t["function"]["name"] for t in formats.row_tools(row)]
    assert names == ["search", "lookup", "finish"]


@pytest.mark.parametrize("fmt", formats.TOOL_FORMATS)
def test_an_invalid_step_is_text_and_reads_back_as_invalid(fmt):
    from reactlab.agents.tools import messages_to_steps

    back = messages_to_steps(formats.tool_row_messages(json.loads(json.dumps(formats.to_row(fmt, TRAJ)))))
    assert [s.action.name for s in back] == ["search", "lookup", "invalid", "finish"]
    assert back[2].action.arg == "Oops.\nDance[now]" and back[2].thought == ""  # agents.tools: its whole text
    assert back[2].observation == "Invalid action: Dance[now]"  # answered by a user turn, not a tool
    assert _same_steps([back[i] for i in (0, 1, 3)], [TRAJ.steps[i] for i in (0, 1, 3)])


def test_tool_row_shapes():
    trl = formats.to_row("messages-tools", TRAJ, "run-a")
    assert isinstance(trl["tools"], str) and trl["task"] == "hotpotqa" and trl["prompt_id"] == "tools@1/react"
    call = trl["messages"][1]["tool_calls"][0]
    assert call == {"id": "call_1", "type": "function", "function": {"name": "search", "arguments": {"entity": "Ed Wood (film)"}}}
    assert trl["messages"][2] == {"role": "tool", "tool_call_id": "call_1", "name": "search",
                                  "content": STEPS[0].observation}
    assert trl["messages"][-1]["role"] == "assistant"  # no observation after the finish call

    oai = formats.to_row("openai-tools", TRAJ, skip_invalid=True)
    assert set(oai) == {"messages", "tools"} and isinstance(oai["tools"], list)
    assert json.loads(oai["messages"][1]["tool_calls"][0]["function"]["arguments"]) == {"entity": "Ed Wood (film)"}
    assert oai["messages"][2] == {"role": "tool", "tool_call_id": "call_1", "content": STEPS[0].observation}
    assert [m.get("weight") for m in oai["messages"] if m["role"] == "assistant"] == [None, None, 0, None]
    act = Trajectory(**{**VALID.__dict__, "steps": [Step(1, "", Action("finish", "x"), "")]})
    assert "content" not in formats.to_row("openai-tools", act)["messages"][1]  # a call without a thought

    share = formats.to_row("sharegpt-tools", TRAJ, "run-a", "Sys")
    tags = [c["from"] for c in share["conversations"]]
    assert tags == ["human", "function_call", "observation", "function_call", "observation", "gpt", "human",
                    "function_call"]  # LLaMA-Factory: user-side turns at odd positions, ending with the model's
    assert share["conversations"][1]["value"] == ('I need to search Ed Wood (film).\n<tool_call>\n'
                                                  '{"name": "search", "arguments": {"entity": "Ed Wood (film)"}}\n</tool_call>')
    assert share["system"] == "Sys" and json.loads(share["tools"]) == formats.row_tools(share)


def test_think_is_a_tool_only_when_used():
    think = Trajectory(**{**VALID.__dict__, "steps": [Step(1, "", Action("think", "hmm"), "OK."), *VALID.steps]})
    row = formats.to_row("messages-tools", think)
    assert [t["function"]["name"] for t in formats.row_tools(row)] == ["search", "lookup", "finish", "think"]


def test_sharegpt_tools_dataset_info():
    info = formats.dataset_info("sharegpt-tools", "hp", {"train": "train.jsonl"}, system=True)["hp"]
    assert info["columns"] == {"messages": "conversations", "tools": "tools", "system": "system"}
    assert info["tags"]["function_tag"] == "function_call" and info["tags"]["observation_tag"] == "observation"


@pytest.mark.parametrize("fmt", formats.TOOL_FORMATS)
def test_tool_rows_show_as_the_fallback_conversation(fmt):
    from reactlab.agents.tools import FALLBACK_TOOLS_PROMPT

    ((label, view),) = formats.row_views(formats.to_row(fmt, TRAJ, system="Sys"), fmt)
    assert label == "" and [m["role"] for m in view] == ["system", "user", "assistant", "user", "assistant",
                                                           "user", "assistant", "user", "assistant"]
    assert view[0]["content"].startswith("Sys\n\n" + FALLBACK_TOOLS_PROMPT.split("{tools}")[0])
    assert view[2]["content"] == ('I need to search Ed Wood (film).\n<tool_call>\n'
                                  '{"name": "search", "arguments": {"entity": "Ed Wood (film)"}}\n</tool_call>')
    assert view[3]["content"] == f"<tool_response>\n{STEPS[0].observation}\n</tool_response>"
