"""Few-shot prompts in the chat layout, for chat-only models: exemplars as earlier turns."""

from __future__ import annotations

from reactlab.agents.prompting import load_prompt
from reactlab.agents.react import ReActAgent
from reactlab.envs.wikienv import WikiEnv
from reactlab.tasks.fever import FEVER
from reactlab.types import Completion, Example


def test_a_named_prompt_in_chat_style_is_few_shot_and_zero_shot_stays_the_default(vendored_index):
    spec = load_prompt("fever_react")
    few = ReActAgent(FEVER(), style="chat", prompt="fever_react")
    assert few.prompt_id == "fever_react@1:chat/react"
    gen = few.episode(Example("c", "Paris is in France.", "SUPPORTS"), WikiEnv(vendored_index))
    msgs = next(gen).prompt
    assert msgs[0]["role"] == "system" and msgs[0]["content"].startswith(spec.instruction["react"][:40])
    assert msgs[1] == {"role": "user", "content": spec.examples[0]["question"]}
    assert msgs[2]["content"] == f"Thought: {spec.examples[0]['steps'][0]['thought']}\nAction: search[Tom DeLonge]"
    assert msgs[3]["content"].startswith("Observation: Thomas Matthew DeLonge")
    assert msgs[-1] == {"role": "user", "content": "Paris is in France."}
    assert sum(m["role"] == "user" and not m["content"].startswith("Observation") for m in msgs) == 1 + len(spec.examples)
    zero = ReActAgent(FEVER(), style="chat")
    assert zero.prompt_id == "chat@1/react"
    assert next(zero.episode(Example("c", "Paris is in France.", "SUPPORTS"), WikiEnv(vendored_index))).prompt == [
        {"role": "user", "content": "Paris is in France."}]


def test_chat_cot_and_act_render_their_own_turns(vendored_index):
    cot = ReActAgent(FEVER(), style="chat", prompt="fever_react", method="cot")
    q = cot.cot_query("Paris is in France.")
    assert isinstance(q.prompt, list) and q.prompt[2]["content"].startswith("Thought: Let's think step by step.")
    t = ReActAgent(FEVER(), style="chat", prompt="fever_react", method="cot")
    gen = t.episode(Example("c", "Paris is in France.", "SUPPORTS"), WikiEnv(vendored_index))
    next(gen)
    try:
        gen.send(Completion(text="Thought: It is.\nAction: finish[SUPPORTS]"))
    except StopIteration as stop:
        assert stop.value.answer == "SUPPORTS"
    act = ReActAgent(FEVER(), style="chat", prompt="fever_react", method="act")
    msgs = next(act.episode(Example("c", "x", "SUPPORTS"), WikiEnv(vendored_index))).prompt
    assert msgs[2]["content"] == "Action: search[Tom DeLonge]"
