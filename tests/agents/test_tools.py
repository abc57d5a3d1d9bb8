"""Native tool calls: schemas, the one parser (every failure reason), Action <-> call round trips, and
prompt rendering through a tool-aware template and through the fallback."""

import json

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from reactlab.agents.parsing import MAX_ARG_CHARS, parse_action
from reactlab.agents.tools import (
    FALLBACK_TOOLS_PROMPT,
    REACT_ACTIONS,
    ParseFailure,
    ToolAction,
    ToolCall,
    action_to_call,
    action_tools,
    call_to_action,
    fallback_messages,
    messages_to_steps,
    parse_tool_calls,
    render_tools_prompt,
    reply_text,
    reply_thought,
    reply_to_action,
    steps_to_messages,
    template_uses_tools,
    tool_schemas,
)
from reactlab.tasks.metrics import FEVER_LABELS
from reactlab.types import Action, Step

# A ChatML template that renders tools the way Qwen2.5's does (written for this test): the tools as JSON
# lines in the system turn, calls as <tool_call> blocks, consecutive tool results in one user turn.
QWEN_STYLE = (
    "{%- if tools %}{{- '<|im_start|>system\\n' }}"
    "{%- if messages[0].role == 'system' %}{{- messages[0].content }}{%- else %}{{- 'You are a helpful assistant.' }}"
    "{%- endif %}"
    "{{- '\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n"
    "You are provided with function signatures within <tools></tools> XML tags:\\n<tools>' }}"
    "{%- for tool in tools %}{{- '\\n' }}{{- tool | tojson }}{%- endfor %}"
    "{{- '\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\\n<tool_call>\\n{\"name\": <function-name>, \"arguments\": "
    "<args-json-object>}\\n</tool_call><|im_end|>\\n' }}"
    "{%- elif messages[0].role == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message.role == 'user' or (message.role == 'system' and not loop.first)"
    " or (message.role == 'assistant' and not message.tool_calls) %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}"
    "{%- elif message.role == 'assistant' %}{{- '<|im_start|>assistant' }}"
    "{%- if message.content %}{{- '\\n' + message.content }}{%- endif %}"
    "{%- for tool_call in message.tool_calls %}"
    "{%- if tool_call.function is defined %}{%- set tool_call = tool_call.function %}{%- endif %}"
    "{{- '\\n<tool_call>\\n{\"name\": \"' + tool_call.name + '\", \"arguments\": ' }}"
    "{{- tool_call.arguments | tojson }}{{- '}\\n</tool_call>' }}"
    "{%- endfor %}{{- '<|im_end|>\\n' }}"
    "{%- elif message.role == 'tool' %}"
    "{%- if loop.index0 == 0 or messages[loop.index0 - 1].role != 'tool' %}{{- '<|im_start|>user' }}{%- endif %}"
    "{{- '\\n<tool_response>\\n' + message.content + '\\n</tool_response>' }}"
    "{%- if loop.last or messages[loop.index0 + 1].role != 'tool' %}{{- '<|im_end|>\\n' }}{%- endif %}"
    "{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

HERMES = '<tool_call>\n{"name": "search", "arguments": {"entity": "Milhouse"}}\n</tool_call>'


def _call(name, args, i=1):
    return {"id": f"call_{i}", "type": "function", "function": {"name": name, "arguments": args}}


# --- schemas ---------------------------------------------------------------------------------------


def test_schemas_of_the_react_actions():
    tools = tool_schemas(action_tools())
    assert [t["function"]["name"] for t in tools] == ["search", "lookup", "finish"]
    for t, arg in zip(tools, ["entity", "keyword", "answer"], strict=True):
        params = t["function"]["parameters"]
        assert t["type"] == "function" and t["function"]["description"]
        assert params["type"] == "object" and params["required"] == [arg]
        assert params["properties"][arg]["type"] == "string"
    json.dumps(tools)  # plain JSON, as the API and chat templates take it


def test_fever_finish_has_its_labels_as_enum():
    tools = tool_schemas(action_tools(answers=FEVER_LABELS, answer_description="The verdict."))
    answer = tools[2]["function"]["parameters"]["properties"]["answer"]
    assert answer == {"type": "string", "description": "The verdict.", "enum": list(FEVER_LABELS)}
    assert "enum" not in tools[0]["function"]["parameters"]["properties"]["entity"]


def test_a_tasks_own_action_and_bad_lists():
    own = ToolAction("calculate", "Evaluate an arithmetic expression.", "expression")
    actions = action_tools(["think", own, "finish"])
    assert [a.name for a in actions] == ["think", "calculate", "finish"]
    assert parse_tool_calls('<tool_call>{"name": "calculate", "arguments": {"expression": "1+1"}}</tool_call>',
                            actions) == [ToolCall("calculate", {"expression": "1+1"})]
    with pytest.raises(KeyError, match="unknown action 'calculate'"):
        action_tools(["calculate"])
    with pytest.raises(ValueError, match="tool name 'Calculate'"):
        ToolAction("Calculate", "Evaluate.", "expression")
    with pytest.raises(ValueError, match="duplicate"):
        action_tools(["search", "search"])


# --- parsing ---------------------------------------------------------------------------------------


def test_hermes_text_with_a_thought_and_free_whitespace():
    text = 'I need Milhouse.\n  <tool_call>  \n\n {"name":"search",\n "arguments":{"entity":"Milhouse"}}  </tool_call>\n'
    assert parse_tool_calls(text) == [ToolCall("search", {"entity": "Milhouse"})]
    assert reply_thought(text) == "I need Milhouse."
    assert reply_to_action(text) == Action("search", "Milhouse")


def test_openai_shape_with_string_and_dict_arguments():
    for args in ('{"keyword": "born"}', {"keyword": "born"}):
        msg = {"role": "assistant", "content": None, "tool_calls": [_call("lookup", args, 7)]}
        assert parse_tool_calls(msg) == [ToolCall("lookup", {"keyword": "born"}, "call_7")]
        assert reply_to_action(msg) == Action("lookup", "born")
    bare = {"tool_calls": [{"name": "finish", "arguments": {"answer": "yes"}}]}  # no "function" wrapper
    assert reply_to_action(bare) == Action("finish", "yes")


def test_a_message_without_tool_calls_is_read_from_its_content():
    assert reply_to_action({"role": "assistant", "content": HERMES, "tool_calls": []}) == Action("search", "Milhouse")


def test_an_unclosed_last_block_is_read_to_the_end():
    assert reply_to_action(HERMES.removesuffix("\n</tool_call>")) == Action("search", "Milhouse")


def test_names_are_case_insensitive_and_numbers_are_text():
    assert reply_to_action('<tool_call>{"name": "Finish", "arguments": {"answer": 1990}}</tool_call>') == \
        Action("finish", "1990") == parse_action("Finish[1990]")


def test_several_calls_when_allowed():
    text = HERMES + "\n" + HERMES.replace("search", "lookup").replace("entity", "keyword")
    calls = parse_tool_calls(text, single=False)
    assert [c.name for c in calls] == ["search", "lookup"]


@pytest.mark.parametrize("reply, kind, reason", [
    ("The answer is 3.", "no_call", "no tool call in the reply"),
    ({"role": "assistant", "content": ""}, "no_call", "no tool call"),
    ("<tool_call>{'name': 'search'}</tool_call>", "bad_json", "tool call 1 is not JSON: Expecting property name"),
    ('<tool_call>{"name": "search", "arguments": {"entity": "X"}</tool_call>', "bad_json", "tool call 1 is not JSON"),
    ({"tool_calls": [_call("search", '{"entity": "X"')]}, "bad_json", "tool call 1: arguments are not JSON"),
    ('<tool_call>["search", "X"]</tool_call>', "bad_call", "tool call 1 must be a JSON object"),
    ('<tool_call>{"name": "search"}</tool_call>', "bad_call", "needs a 'name' (a string) and 'arguments'"),
    ('<tool_call>{"name": "search", "arguments": "X"}</tool_call>', "bad_json", "arguments are not JSON"),
    ('<tool_call>{"name": "search", "arguments": ["X"]}</tool_call>', "bad_call", "'arguments' must be a JSON object"),
    ({"tool_calls": {"name": "search"}}, "bad_call", "'tool_calls' must be a list"),
    ('<tool_call>{"name": "wikipedia", "arguments": {"q": "X"}}</tool_call>', "unknown_tool",
     "unknown tool 'wikipedia' (tools: search, lookup, finish, think)"),
    ('<tool_call>{"name": "search", "arguments": {"query": "X"}}</tool_call>', "missing_argument",
     "tool 'search' needs the argument 'entity'"),
    ('<tool_call>{"name": "search", "arguments": {"entity": "X", "k": 3}}</tool_call>', "bad_argument",
     "tool 'search' takes only 'entity', not ['k']"),
    ('<tool_call>{"name": "finish", "arguments": {"answer": ["a", "b"]}}</tool_call>', "bad_argument",
     "'answer' must be a string"),
    ('<tool_call>{"name": "finish", "arguments": {"answer": true}}</tool_call>', "bad_argument",
     "'answer' must be a string"),
    (HERMES + HERMES, "several_calls", "2 tool calls where one was expected"),
])
def test_each_failure_has_its_reason(reply, kind, reason):
    got = parse_tool_calls(reply)
    assert isinstance(got, ParseFailure)
    assert got.kind == kind and reason in got.reason
    action = reply_to_action(reply)  # counted as an invalid action, keeping the reply's text
    assert action.name == "invalid" and action.arg == got.raw.strip()[:MAX_ARG_CHARS]
    assert action.arg or not reply_text(reply), "the invalid action keeps something to show"
    if isinstance(reply, str):
        assert action.arg == reply.strip()[:MAX_ARG_CHARS]


def test_a_tool_not_offered_is_unknown():
    got = parse_tool_calls(HERMES, action_tools(["finish"]))
    assert isinstance(got, ParseFailure) and got.reason == "unknown tool 'search' (tools: finish)"


def test_an_invalid_reply_is_bounded():
    assert len(reply_to_action("x" * 5000).arg) == MAX_ARG_CHARS


# --- calls <-> actions -----------------------------------------------------------------------------

names = st.sampled_from(["search", "lookup", "finish", "think"])
args = st.text(alphabet=st.characters(blacklist_characters="[]\n\r", blacklist_categories=("Cs",)), max_size=60).map(str.strip)


@given(names, args)
@example("search", "</tool_call>")  # a tag inside an argument must not end the call's block
def test_a_call_is_the_action_its_text_spelling_is(name, arg):
    action = Action(name, arg)
    call = action_to_call(action, call_id="c")
    assert call.arguments == {REACT_ACTIONS[name].argument: arg}
    assert call_to_action(call) == action == parse_action(str(action))
    assert reply_to_action(call.to_hermes()) == action
    assert reply_to_action({"role": "assistant", "content": "", "tool_calls": [call.to_openai()]}) == action


def test_every_react_action_round_trips():
    for name, spec in REACT_ACTIONS.items():
        text = f"{name}[Scott Derrickson]"
        call = action_to_call(parse_action(text))
        assert (call.name, call.arguments) == (name, {spec.argument: "Scott Derrickson"})
        assert call_to_action(call) == parse_action(text)


def test_an_invalid_action_is_no_call():
    with pytest.raises(ValueError, match="'invalid' is not a tool"):
        action_to_call(Action("invalid", "blah"))


thoughts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40).map(str.strip).filter(
    lambda t: "<tool_call>" not in t)


@given(st.lists(st.tuples(thoughts, names, args, st.text(max_size=40)), min_size=1, max_size=4))
def test_steps_round_trip_through_tool_messages(rows):
    steps = [Step(i + 1, t, Action(n, a), obs) for i, (t, n, a, obs) in enumerate(rows)]
    msgs = steps_to_messages(steps)
    assert [m["role"] for m in msgs] == ["assistant", "tool"] * len(steps)
    back = messages_to_steps([{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}, *msgs])
    assert [(s.i, s.thought, s.action, s.observation) for s in back] == \
        [(s.i, s.thought, s.action, s.observation) for s in steps]
    for s in back:
        assert reply_to_action(s.raw) == s.action and reply_thought(s.raw) == s.thought


def test_an_invalid_step_stays_invalid():
    steps = [Step(1, "Hm.", Action("invalid", "Search Milhouse"), "Invalid action: Search Milhouse"),
             Step(2, "Go.", Action("search", "Milhouse"), "Milhouse is a character.")]
    msgs = steps_to_messages(steps)
    assert msgs[:2] == [{"role": "assistant", "content": "Hm.\nSearch Milhouse"},
                        {"role": "user", "content": "Invalid action: Search Milhouse"}]
    back = messages_to_steps(msgs)
    assert (back[0].thought, back[0].action) == ("", Action("invalid", "Hm.\nSearch Milhouse"))
    assert back[0].observation == steps[0].observation
    assert (back[1].thought, back[1].action, back[1].observation) == ("Go.", steps[1].action, steps[1].observation)


# --- rendering -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smollm2_tokenizer(smollm2_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_dir)


@pytest.fixture(scope="module")
def qwen_style_tokenizer(smollm2_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    tok.chat_template = QWEN_STYLE
    return tok


def _conversation(system=True):
    steps = [Step(1, "I need Milhouse.", Action("search", "Milhouse"), "Milhouse Van Houten is a character."),
             Step(2, "", Action("finish", "Matt Groening"), "Episode finished.")]
    head = [{"role": "system", "content": "Answer the question."}] if system else []
    return [*head, {"role": "user", "content": "Who named Milhouse?"}, *steps_to_messages(steps)]


def test_template_detection(smollm2_tokenizer, qwen_style_tokenizer):
    assert not template_uses_tools(smollm2_tokenizer)
    assert template_uses_tools(qwen_style_tokenizer)


def test_a_tool_template_renders_the_tools(qwen_style_tokenizer):
    tools = tool_schemas(action_tools(answers=FEVER_LABELS))
    text = render_tools_prompt(qwen_style_tokenizer, _conversation(), tools)
    for t in tools:
        assert "\n" + json.dumps(t, ensure_ascii=False) + "\n" in text
    assert text.startswith("<|im_start|>system\nAnswer the question.\n\n# Tools\n")
    assert ('<|im_start|>assistant\nI need Milhouse.\n<tool_call>\n{"name": "search", "arguments": '
            '{"entity": "Milhouse"}}\n</tool_call><|im_end|>\n') in text
    assert "<|im_start|>user\n<tool_response>\nMilhouse Van Houten is a character.\n</tool_response><|im_end|>" in text
    assert text.endswith("<|im_start|>assistant\n")


@pytest.mark.parametrize("system", [True, False])
def test_the_fallback_gives_the_tool_templates_text(smollm2_tokenizer, qwen_style_tokenizer, system):
    tools = tool_schemas(action_tools())
    msgs = _conversation(system)
    fallback = render_tools_prompt(smollm2_tokenizer, msgs, tools)
    assert fallback.count("<|im_start|>system\n") == 1 and "You are a helpful AI assistant named SmolLM" not in fallback
    assert FALLBACK_TOOLS_PROMPT.split("{tools}")[0] in fallback
    if system:  # with the same system message, SmolLM2's ChatML through the fallback is Qwen2.5's text
        assert fallback == render_tools_prompt(qwen_style_tokenizer, msgs, tools)
    else:
        assert fallback.startswith("<|im_start|>system\n# Tools\n")
        native = render_tools_prompt(qwen_style_tokenizer, msgs, tools)
        assert fallback == native.replace("You are a helpful assistant.\n\n", "", 1)


def test_the_fallback_merges_consecutive_tool_results():
    msgs = [{"role": "user", "content": "Q"},
            {"role": "assistant", "content": "", "tool_calls": [_call("search", '{"entity": "A"}', 1),
                                                                 _call("search", '{"entity": "B"}', 2)]},
            {"role": "tool", "tool_call_id": "call_1", "content": "a"},
            {"role": "tool", "tool_call_id": "call_2", "content": "b"}]
    out = fallback_messages(msgs, [])
    assert [m["role"] for m in out] == ["system", "user", "assistant", "user"]
    assert out[2]["content"].count("<tool_call>") == 2
    assert parse_tool_calls(out[2]["content"], single=False) == [ToolCall("search", {"entity": "A"}),
                                                                ToolCall("search", {"entity": "B"})]
    assert out[3]["content"] == "<tool_response>\na\n</tool_response>\n<tool_response>\nb\n</tool_response>"


def test_a_rendered_assistant_turn_parses_back(qwen_style_tokenizer):
    text = render_tools_prompt(qwen_style_tokenizer, _conversation(), tool_schemas(action_tools()),
                               add_generation_prompt=False)
    turns = [t.split("<|im_end|>")[0] for t in text.split("<|im_start|>assistant\n")[1:]]
    assert [reply_to_action(t) for t in turns] == [Action("search", "Milhouse"), Action("finish", "Matt Groening")]
    assert reply_thought(turns[0]) == "I need Milhouse."


def test_a_malformed_api_call_becomes_an_invalid_step_and_still_renders(smollm2_tokenizer, qwen_style_tokenizer):
    msgs = [{"role": "user", "content": "Q"},
            {"role": "assistant", "content": None, "tool_calls": [_call("search", '{"entity": "Mil')]},
            {"role": "tool", "tool_call_id": "call_1", "content": "Invalid action"}]
    (step,) = messages_to_steps(msgs)
    assert step.action.name == "invalid" and '{\\"entity\\": \\"Mil' in step.action.arg
    assert step.raw == '<tool_call>\n{"name": "search", "arguments": "{\\"entity\\": \\"Mil"}\n</tool_call>'
    assert isinstance(parse_tool_calls(step.raw), ParseFailure)  # its Hermes text is as invalid
    for tok in (smollm2_tokenizer, qwen_style_tokenizer):
        assert '"arguments": "{\\"entity\\": \\"Mil"}' in render_tools_prompt(tok, msgs, [])


def test_the_fallback_on_gemma3s_template(gemma_dir):
    """Gemma 3's template has no tools and folds the system text into the first user turn; the fallback's
    turns still alternate, so it renders, tools and calls included."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gemma_dir)
    assert not template_uses_tools(tok)
    text = render_tools_prompt(tok, _conversation(), tool_schemas(action_tools()))
    assert "Answer the question.\n\n# Tools\n" in text and '"name": "lookup"' in text
    assert '<tool_call>\n{"name": "finish", "arguments": {"answer": "Matt Groening"}}\n</tool_call>' in text
    assert "<tool_response>\nEpisode finished.\n</tool_response>" in text
