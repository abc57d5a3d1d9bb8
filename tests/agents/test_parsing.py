"""Parsing model text: round trips, and property tests on arbitrary text (never raises, bounded)."""

from hypothesis import given, settings
from hypothesis import strategies as st

from reactlab.agents.parsing import (
    MAX_ARG_CHARS,
    chat_assistant,
    completion_step,
    parse_action,
    split_thought_action,
)
from reactlab.agents.react import ReActAgent
from reactlab.types import Action, Completion, Example

names = st.sampled_from(["search", "lookup", "finish", "think"])
args = st.text(alphabet=st.characters(blacklist_characters="[]\n\r", blacklist_categories=("Cs",)), max_size=60).map(str.strip)


@given(names, args)
def test_action_round_trip(name, arg):
    a = Action(name, arg)
    assert parse_action(str(a)) == a
    assert parse_action(str(a).lower()) == Action(name, arg.lower())


@given(st.text(alphabet=st.characters(blacklist_characters="\n\r", blacklist_categories=("Cs",)), max_size=80).map(str.strip),
       names, args, st.integers(1, 9))
def test_completion_step_round_trip(thought, name, arg, i):
    action = Action(name, arg)
    text = completion_step(i, thought, action, "obs")
    generated = text.removeprefix(f"Thought {i}:").split("\nObservation")[0]  # what a model would write
    t, act = split_thought_action(generated, i)
    assert (t, parse_action(act)) == (thought, action)
    t, act = split_thought_action(chat_assistant(thought, action))
    assert (t, parse_action(act)) == (thought, action)


@settings(max_examples=300)
@given(st.text(max_size=3000))
def test_arbitrary_text_never_raises_and_is_bounded(text):
    a = parse_action(text)
    assert a.name in ("search", "lookup", "finish", "think", "invalid")
    assert len(a.arg) <= MAX_ARG_CHARS
    thought, act = split_thought_action(text, 3)
    assert isinstance(thought, str) and (act is None or isinstance(act, str))


class NullEnv:
    def reset(self, example):
        return example.question

    def step(self, action):
        return f"saw {action.name}", action.name == "finish"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(max_size=400), min_size=1, max_size=30), st.sampled_from(["completion", "chat"]),
       st.sampled_from(["react", "act", "cot"]))
def test_the_loop_survives_any_model_text(replies, style, method):
    """Whatever the model says, an episode ends within its step bound with a trajectory."""
    agent = ReActAgent(method=method, style=style, prompt="zeroshot", max_steps=4)
    gen = agent.episode(Example("x", "q?", "a"), NullEnv())
    calls = 0
    try:
        q = next(gen)
        while True:
            calls += 1
            assert calls <= 2 * 4  # at most two calls a step (the paper's action fallback)
            q = gen.send(Completion(text=replies[calls % len(replies)]))
    except StopIteration as stop:
        t = stop.value
    assert q is not None and len(t.steps) <= 4
    assert t.status in ("finished", "max_steps")
