"""The ReAct loop on a scripted model: layouts, fallback, forced finish, errors, batching, prompts."""

import json
import os
from pathlib import Path

import pytest

from reactlab.agents.prompting import EXEMPLARS_FOLLOW, load_prompt, render_prefix
from reactlab.agents.react import ReActAgent
from reactlab.config import RunConfig
from reactlab.envs.wikienv import WikiEnv
from reactlab.llm.scripted import ScriptedLLM
from reactlab.runner import RunSpec, run, run_from_config
from reactlab.tasks.hotpotqa import HotpotQA
from reactlab.types import Action, Completion, Example, ToolChat

GOLDEN = Path(__file__).parent / "golden"
EX = Example("q1", "Which band was formed first, The Exies or Circus Diablo?", "The Exies", "comparison")


def drive(agent, example, env, replies):
    """Run one episode, answering each query with the next reply; returns (trajectory, queries)."""
    gen, queries, replies = agent.episode(example, env), [], list(replies)
    try:
        q = next(gen)
        while True:
            queries.append(q)
            r = replies.pop(0)
            q = gen.send(r if isinstance(r, Completion) else Completion(text=r))
    except StopIteration as stop:
        return stop.value, queries


def test_completion_react_episode(vendored_index):
    agent = ReActAgent(model="scripted")
    t, qs = drive(agent, EX, WikiEnv(vendored_index), [
        " I need to search The Exies.\nAction 1: Search[The Exies]",
        " Now Circus Diablo.\nAction 2: search[Circus Diablo]",
        " 1997 < 2006.\nAction 3: Finish[The Exies]",
    ])
    assert [s.action.name for s in t.steps] == ["search", "search", "finish"]
    assert t.answer == "The Exies" and t.status == "finished" and t.prompt_id == "hotpotqa_react@1/react"
    assert qs[0].prompt.endswith(f"Question: {EX.question}\nThought 1:")
    assert qs[0].params.stop == ["\nObservation", "\nQuestion:"]  # the paper's stop, and an invented next exemplar
    # the second prompt carries the first step with the real observation, in the paper's layout
    assert "Thought 1: I need to search The Exies.\nAction 1: Search[The Exies]\nObservation 1: The Exies were" in qs[1].prompt
    assert qs[2].prompt.startswith(qs[1].prompt) and qs[1].prompt.startswith(qs[0].prompt.removesuffix("Thought 1:"))


def test_paper_fallback_when_no_action_line(vendored_index):
    t, qs = drive(ReActAgent(), EX, WikiEnv(vendored_index), [" I should look for the bands.", " Finish[The Exies]"])
    assert qs[1].prompt.endswith("Thought 1: I should look for the bands.\nAction 1:") and qs[1].params.stop == ["\n"]
    assert t.steps[0].action == Action("finish", "The Exies") and t.answer == "The Exies"


def test_invalid_actions_become_observations_and_max_steps_forces_finish(vendored_index):
    t, _ = drive(ReActAgent(max_steps=3), EX, WikiEnv(vendored_index), [f" hmm\nAction {i}: Dance[now]" for i in (1, 2, 3)])
    assert [s.observation.startswith("Invalid action") for s in t.steps] == [True] * 3
    assert t.status == "max_steps" and t.answer == "" and len(t.steps) == 3


def test_backend_error_is_recorded_not_raised(vendored_index):
    t, _ = drive(ReActAgent(), EX, WikiEnv(vendored_index),
                 [Completion(text="", finish_reason="error", error="HTTP 500 after 6 retries")])
    assert t.status == "error" and t.error == "HTTP 500 after 6 retries" and t.steps == []


def test_act_and_cot_layouts(vendored_index):
    t, qs = drive(ReActAgent(method="act"), EX, WikiEnv(vendored_index), [" Search[The Exies]", " Finish[The Exies]"])
    assert qs[0].prompt.endswith("Action 1:") and "Thought 1:" not in qs[0].prompt.split("Question: Which band")[-1]
    assert "\nAction 1: Search[The Exies]\nObservation 1: " in qs[1].prompt and t.answer == "The Exies"
    t, qs = drive(ReActAgent(method="cot"), EX, WikiEnv(vendored_index),
                  [" The Exies formed in 1997, Circus Diablo in 2006. So the answer is The Exies.\nAction: Finish[The Exies]"])
    assert qs[0].prompt.endswith("Thought: Let's think step by step.") and t.answer == "The Exies"
    assert t.prompt_id == "hotpotqa_react@1/cot"


def test_chat_layout_is_fireact(vendored_index):
    t, qs = drive(ReActAgent(style="chat"), EX, WikiEnv(vendored_index),
                  ["Thought: search it\nAction: search[The Exies]", "search[Circus Diablo]", "Thought: done\nAction: finish[The Exies]"])
    assert qs[0].prompt == [{"role": "user", "content": EX.question}]
    assert qs[1].prompt[1] == {"role": "assistant", "content": "Thought: search it\nAction: search[The Exies]"}
    assert qs[1].prompt[2]["content"].startswith("Observation: The Exies were an American rock band")
    assert qs[2].prompt[3] == {"role": "assistant", "content": "Thought: \nAction: search[Circus Diablo]"}
    assert t.answer == "The Exies" and t.prompt_id == "chat@1/react"


def test_runner_batches_react_episodes(vendored_index, tmp_path):
    seen = []

    def reply(prompt):
        seen.append(prompt)
        return " I know it.\nAction 1: Finish[yes]"

    llm = ScriptedLLM(reply)
    calls = []
    orig = llm.generate
    llm.generate = lambda prompts, params: calls.append(len(prompts)) or orig(prompts, params)
    exs = HotpotQA().examples("eval", limit=10)
    spec = RunSpec("hotpotqa", "eval", "react", "scripted", "hotpotqa_react@1/react")
    s = run(exs, ReActAgent(), HotpotQA(), lambda: WikiEnv(vendored_index), tmp_path, spec, llms=llm,
            batch_size=8, progress=False)
    assert calls == [8, 2] and s.n == 10 and s.status == {"finished": 10}


PROMPT_TASKS = {"hotpotqa_react": ("hotpotqa", "bamboogle"), "fever_react": ("fever",),
                "strategyqa_react": ("strategyqa",), "mmlu_react": ("mmlu",)}


@pytest.mark.parametrize("name", sorted(PROMPT_TASKS))
def test_exemplar_observations_are_what_the_local_wiki_returns(vendored_index, name):
    """Every packaged few-shot prompt shows the model real observations, not stale ones, and none
    of its exemplars is an evaluation question of a task that uses it."""
    from reactlab.agents.parsing import parse_action
    from reactlab.tasks import make_task

    spec = load_prompt(name)
    if name == "hotpotqa_react":
        assert len(spec.examples) == 6
        assert sorted(e["type"] for e in spec.examples) == ["bridge"] * 3 + ["comparison"] * 3
    for ex in spec.examples:
        env = WikiEnv(vendored_index)
        env.reset(Example("x", ex["question"], ex["answer"]))
        for step in ex["steps"]:
            obs, done = env.step(parse_action(step["action"]))
            assert done == ("observation" not in step)
            if not done:
                assert obs == step["observation"], step["action"]
        assert parse_action(ex["steps"][-1]["action"]).arg == ex["answer"]
    asked = {e["question"].strip().lower() for e in spec.examples}
    for task_name in PROMPT_TASKS[name]:
        task = make_task(task_name)
        for split in {*task.eval_splits, *(("dev",) if task_name in ("hotpotqa", "fever") else ())}:
            assert not asked & {e.question.strip().lower() for e in task.examples(split)}, (task_name, split)


@pytest.mark.parametrize("method", ["react", "act", "cot"])
def test_prompt_rendering_golden(method):
    """Golden files: a change to a prompt's text must be deliberate (bump its version)."""
    text = render_prefix(load_prompt("hotpotqa_react"), method) + f"Question: {EX.question}\n"
    golden = GOLDEN / f"hotpotqa_react_{method}.txt"
    if os.environ.get("REACTLAB_UPDATE_GOLDEN"):  # regenerate deliberately, then commit
        golden.write_text(text)
    assert golden.exists(), f"{golden} missing: run with REACTLAB_UPDATE_GOLDEN=1 and commit it"
    assert text == golden.read_text()


def test_zero_shot_completion_layout(vendored_index):
    t, qs = drive(ReActAgent(prompt="zeroshot"), EX, WikiEnv(vendored_index), [" done\nAction 1: Finish[The Exies]"])
    assert qs[0].prompt == f"Question: {EX.question}\nThought 1:" and t.prompt_id == "zeroshot@1/react"


def test_standard_prompting_is_one_call_answered_by_its_first_line(vendored_index):
    """The ReAct paper's Standard prompting: exemplars as question + answer, one call stopped at a
    newline, the first line the answer (in the chat layout less a leading ``Answer:``)."""
    agent = ReActAgent(method="standard")
    t, (q,) = drive(agent, EX, WikiEnv(vendored_index), [" The Exies"])
    assert agent.prompt_id == "hotpotqa_react@1/standard" and t.answer == "The Exies" and t.status == "finished"
    assert q.prompt.endswith(f"Question: {EX.question}\nAnswer:") and q.params.stop == ["\n"]
    assert "Question: At the 2011 census, what was the population of the town where Kerry Saxby-Junna was born?\n" \
           "Answer: 6,960\n" in q.prompt
    assert [(s.thought, s.action) for s in t.steps] == [("", Action("finish", "The Exies"))]
    chat = ReActAgent(method="standard", style="chat", prompt="hotpotqa_react")
    t, (q,) = drive(chat, EX, WikiEnv(vendored_index), ["Answer: The Exies\nBecause 1997 < 2006."])
    assert t.answer == "The Exies" and q.prompt[-1] == {"role": "user", "content": EX.question}
    assert {"role": "assistant", "content": "Answer: 6,960"} in q.prompt


def test_dev_shots_need_standard_completion_and_a_task_with_dev_exemplars():
    with pytest.raises(ValueError, match="needs --method standard in the completion style"):
        ReActAgent(HotpotQA(), method="cot", prompt="dev5")
    with pytest.raises(ValueError, match="task 'hotpotqa' has no dev exemplars"):
        ReActAgent(HotpotQA(), method="standard", prompt="dev5")


# --- the tools style: native function calls, the same trajectory record ---------------------------

def _call(name: str, arg: str) -> str:
    """A Hermes-style call block as a local model writes it."""
    key = {"search": "entity", "lookup": "keyword", "finish": "answer"}[name]
    return f'<tool_call>\n{json.dumps({"name": name, "arguments": {key: arg}})}\n</tool_call>'


def _api_call(name: str, arg: str) -> dict:
    """The same call as an API returns it (OpenAI shape, arguments a JSON string)."""
    key = {"search": "entity", "lookup": "keyword", "finish": "answer"}[name]
    return {"content": None, "tool_calls": [{"id": "x1", "type": "function",
                                             "function": {"name": name, "arguments": json.dumps({key: arg})}}]}


# Each question's decisions: (thought, action name, argument) per step.
PLAN = [("I need to search the first entity.", "search", "The Exies"),
        ("Now the second one.", "lookup", "formed"),
        ("I know enough.", "finish", "The Exies")]


def _scripted(style: str):
    """A model that takes PLAN's step k at its k-th turn, spelled in ``style`` (tools: step 2 as an API
    reply, the others as Hermes text, each followed by text the stop must cut)."""
    def reply(prompt):
        k = sum(m["role"] == "assistant" for m in prompt)
        thought, name, arg = PLAN[k]
        if style == "chat":
            return f"Thought: {thought}\nAction: {name}[{arg}]\nObservation: made up"
        if k == 1:
            return {**_api_call(name, arg), "content": thought}
        return f"{thought}\n{_call(name, arg)}\n<tool_response>made up</tool_response>"
    return ScriptedLLM(reply)


def test_tools_style_gives_the_text_styles_trajectory_through_the_runner(vendored_index, tmp_path):
    def trajectories(style):
        out = tmp_path / style
        cfg = RunConfig(out=str(out), style=style, limit=2, max_steps=5)
        s = run_from_config(cfg, index=vendored_index, llms={"default": _scripted(style)}, progress=False)
        return s, [json.loads(x) for x in (out / "trajectories.jsonl").read_text().splitlines()]

    (s_chat, chat), (s_tools, tools) = trajectories("chat"), trajectories("tools")
    same = ("id", "question", "gold", "answer", "status", "scores", "agent", "method")
    assert [{k: t[k] for k in same} for t in tools] == [{k: t[k] for k in same} for t in chat]
    steps = [[(st["i"], st["thought"], st["action"], st["observation"]) for st in t["steps"]] for t in tools]
    assert steps == [[(st["i"], st["thought"], st["action"], st["observation"]) for st in t["steps"]] for t in chat]
    assert [st["action"]["name"] for st in tools[0]["steps"]] == ["search", "lookup", "finish"]
    assert tools[0]["prompt_id"] == "tools@1/react" and s_tools.invalid_action_rate == s_chat.invalid_action_rate == 0
    assert tools[0]["steps"][0]["raw"].endswith("</tool_call>")  # the model's text as generated, stop included
    assert '"name": "lookup"' in tools[0]["steps"][1]["raw"]  # an API's calls recorded as the text they stand for


def test_tools_style_prompt_is_a_tool_conversation(vendored_index):
    t, qs = drive(ReActAgent(style="tools"), EX, WikiEnv(vendored_index), [
        f"Search first.\n{_call('search', 'The Exies')}",
        Completion(text="", tool_calls=_api_call("finish", "The Exies")["tool_calls"]),
    ])
    first, second = qs[0].prompt, qs[1].prompt
    assert isinstance(first, ToolChat) and [f["function"]["name"] for f in first.tools] == ["search", "lookup", "finish"]
    assert [m["role"] for m in first] == ["system", "user"] and first[1]["content"] == EX.question
    assert qs[0].params.stop == ["</tool_call>"]
    call, answer = second[2], second[3]
    assert call["role"] == "assistant" and call["content"] == "Search first."
    assert json.loads(call["tool_calls"][0]["function"]["arguments"]) == {"entity": "The Exies"}
    assert answer == {"role": "tool", "tool_call_id": "call_1", "name": "search", "content": t.steps[0].observation}
    assert second.tools == first.tools and len(first) == 2  # each query its own copy
    assert t.answer == "The Exies" and t.status == "finished" and t.steps[1].thought == ""


@pytest.mark.parametrize("reply", [
    "I will just answer: The Exies",  # no call
    '<tool_call>{"name": "search", "arguments": {"entity": "X"</tool_call>',  # bad JSON
    '<tool_call>{"name": "dance", "arguments": {"move": "X"}}</tool_call>',  # unknown tool
    Completion(text="", tool_calls=[{"id": "c", "type": "function", "function": {"name": "search", "arguments": "{"}}]),
])
def test_a_malformed_call_is_an_invalid_action(vendored_index, reply):
    t, qs = drive(ReActAgent(style="tools", max_steps=2), EX, WikiEnv(vendored_index),
                  [reply, f"{_call('finish', 'x')}"])
    bad = t.steps[0]
    assert bad.action.name == "invalid" and bad.observation.startswith("Invalid action") and bad.thought == ""
    assert bad.action.arg  # the reply's text (or its calls as JSON) kept as the invalid action
    # the next prompt shows the model its reply and the observation, with no call to answer
    assert qs[1].prompt[-2] == {"role": "assistant", "content": bad.action.arg}
    assert qs[1].prompt[-1] == {"role": "user", "content": bad.observation}
    assert t.steps[1].action == Action("finish", "x") and t.status == "finished"


def test_tools_style_counts_invalid_actions_in_the_summary(vendored_index, tmp_path):
    llm = ScriptedLLM(lambda p: "The answer is yes." if len(p) < 4 else _call("finish", "yes"))
    s = run_from_config(RunConfig(out=str(tmp_path / "r"), style="tools", limit=2), index=vendored_index,
                        llms={"default": llm}, progress=False)
    assert s.invalid_action_rate == 0.5 and s.status == {"finished": 2}


def test_tools_style_step_limit_forces_finish_and_methods(vendored_index):
    t, qs = drive(ReActAgent(style="tools", method="act", max_steps=2), EX, WikiEnv(vendored_index),
                  [_call("search", "The Exies"), _call("search", "Circus Diablo")])
    assert t.status == "max_steps" and t.answer == "" and len(t.steps) == 2 and t.prompt_id == "tools@1/act"
    with pytest.raises(ValueError, match="style 'tools' runs the methods react and act"):
        ReActAgent(style="tools", method="cot")


def test_tools_style_few_shot_exemplars_are_tool_conversations(vendored_index):
    agent = ReActAgent(style="tools", prompt="hotpotqa_react", tools_system="Use the tools.")
    assert agent.prompt_id == "hotpotqa_react@1:tools/react"
    _, (q,) = drive(agent, EX, WikiEnv(vendored_index), [_call("finish", "The Exies")])
    msgs = list(q.prompt)
    assert msgs[0] == {"role": "system", "content": f"Use the tools. {EXEMPLARS_FOLLOW}"}
    spec = load_prompt("hotpotqa_react")
    first = spec.examples[0]
    assert msgs[1] == {"role": "user", "content": first["question"]}
    assert msgs[2]["content"] == first["steps"][0]["thought"]
    assert json.loads(msgs[2]["tool_calls"][0]["function"]["arguments"]) == {"entity": "Kerry Saxby-Junna"}
    assert msgs[3]["role"] == "tool" and msgs[3]["content"] == first["steps"][0]["observation"]
    calls = [m for m in msgs if m.get("tool_calls")]
    answers = [m for m in msgs if m["role"] == "tool"]
    assert len(calls) == len(answers) == sum(len(e["steps"]) for e in spec.examples)  # every call answered
    assert msgs[-1] == {"role": "user", "content": EX.question}


@pytest.mark.slow
def test_smollm2_runs_hotpotqa_in_the_tools_style(vendored_index, smollm2_dir, tmp_path):
    """The embedded SmolLM2 (no tool support in its template: the fallback) through the runner: every
    step is a parsed call or an invalid action, every episode ends; its accuracy is not the point."""
    from reactlab.llm.hf import HFLLM

    llm = HFLLM(smollm2_dir, name="smollm2", batch_size=2)
    out = tmp_path / "tools"
    s = run_from_config(RunConfig(out=str(out), style="tools", limit=2, max_steps=4), index=vendored_index,
                        llms={"default": llm}, progress=False)
    trajs = [json.loads(x) for x in (out / "trajectories.jsonl").read_text().splitlines()]
    assert s.n == 2 and sum(s.status.values()) == 2 and "error" not in s.status
    assert all(t["steps"] and t["prompt_id"] == "tools@1/react" for t in trajs)
    for st in (st for t in trajs for st in t["steps"]):
        assert st["action"]["name"] in ("search", "lookup", "finish", "invalid")
        assert "</tool_call>" not in st["raw"][:-len("</tool_call>")]  # generation stopped at the first call's end
