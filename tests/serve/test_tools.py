"""``reactlab serve`` speaks tools: ``tools`` / ``tool_choice`` in, ``tool_calls`` out (streamed too),
checked with the official ``openai`` client; the prompt rendered with the served model's template."""

from __future__ import annotations

import json

import httpx
import pytest

from reactlab.llm.scripted import ScriptedLLM
from reactlab.serve import serve

openai = pytest.importorskip("openai")


def tool(name: str, arg: str, description: str = "") -> dict:
    return {"type": "function", "function": {"name": name, "description": description, "parameters": {
        "type": "object", "properties": {arg: {"type": "string"}}, "required": [arg]}}}


TOOLS = [tool("search", "entity", "Search Wikipedia."), tool("finish", "answer", "Answer.")]
CALL = 'Let me look.\n<tool_call>\n{"name": "search", "arguments": {"entity": "Milhouse"}}\n</tool_call>'


class TemplateLLM(ScriptedLLM):
    """A scripted model behind a real tokenizer (SmolLM2's, whose template has no tools: the fallback
    renders them): the server renders tool prompts with it; ``prompts`` keeps what the model saw."""

    def __init__(self, tokenizer, reply):
        self.prompts: list = []
        self.tokenizer = tokenizer

        def answer(prompt):
            self.prompts.append(prompt)
            return reply(prompt) if callable(reply) else reply

        super().__init__(answer, name="tpl")


@pytest.fixture(scope="module")
def tokenizer(smollm2_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_dir)


@pytest.fixture
def start():
    servers = []

    def run(llm, **kw):
        servers.append(serve(llm, model_name="m", **kw))
        return servers[-1], openai.OpenAI(base_url=servers[-1].url + "/v1", api_key="none", max_retries=0)

    yield run
    for s in servers:
        s.shutdown()


def test_a_call_comes_back_as_tool_calls_and_the_prompt_holds_the_tools(start, tokenizer):
    llm = TemplateLLM(tokenizer, CALL)
    _, client = start(llm)
    msgs = [{"role": "system", "content": "Answer questions."}, {"role": "user", "content": "Who is Milhouse?"}]
    r = client.chat.completions.create(model="m", messages=msgs, tools=TOOLS)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Let me look."
    [call] = choice.message.tool_calls
    assert (call.id, call.type, call.function.name) == ("call_1", "function", "search")
    assert json.loads(call.function.arguments) == {"entity": "Milhouse"}
    prompt = llm.prompts[0]
    assert isinstance(prompt, str) and prompt.startswith("<|im_start|>system\nAnswer questions.\n\n# Tools")
    assert json.dumps(TOOLS[0]) in prompt and prompt.endswith("Who is Milhouse?<|im_end|>\n<|im_start|>assistant\n")

    # The client sends the call and its result back; new call ids continue after the old ones.
    history = [*msgs, choice.message.model_dump(exclude_none=True),
               {"role": "tool", "tool_call_id": call.id, "content": "Milhouse Mussolini Van Houten is ..."}]
    r = client.chat.completions.create(model="m", messages=history, tools=TOOLS)
    assert r.choices[0].message.tool_calls[0].id == "call_2"
    assert ("<|im_start|>assistant\nLet me look.\n<tool_call>\n" in llm.prompts[1]
            and "<|im_start|>user\n<tool_response>\nMilhouse Mussolini Van Houten is ...\n</tool_response>"
            in llm.prompts[1])


def test_plain_text_and_malformed_calls_are_content(start, tokenizer):
    bad = '<tool_call>{"name": "search", "arguments": {"entity": "X"}</tool_call>'  # a brace short
    replies = iter(["It is 42.", bad, '<tool_call>{"name": "fly", "arguments": {"to": "X"}}</tool_call>'])
    _, client = start(TemplateLLM(tokenizer, lambda p: next(replies)))
    for text in ("It is 42.", bad, '<tool_call>{"name": "fly", "arguments": {"to": "X"}}</tool_call>'):
        c = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "q"}], tools=TOOLS)
        assert (c.choices[0].message.content, c.choices[0].message.tool_calls) == (text, None)
        assert c.choices[0].finish_reason == "stop"


def test_streamed_calls_accumulate_in_the_official_client(start, tokenizer):
    _, client = start(TemplateLLM(tokenizer, CALL + "\n" + CALL.split("\n", 1)[1].replace("Milhouse", "Bart")))
    with client.chat.completions.stream(model="m", messages=[{"role": "user", "content": "q"}],
                                        tools=TOOLS) as stream:
        final = stream.get_final_completion()
    msg = final.choices[0].message
    assert final.choices[0].finish_reason == "tool_calls" and msg.content.strip() == "Let me look."
    assert [(c.id, c.function.name, json.loads(c.function.arguments)) for c in msg.tool_calls] == [
        ("call_1", "search", {"entity": "Milhouse"}), ("call_2", "search", {"entity": "Bart"})]

    # Raw chunks: content before the call, then one tool_calls chunk, then the finish reason.
    chunks = list(client.chat.completions.create(model="m", messages=[{"role": "user", "content": "q"}],
                                                 tools=TOOLS, stream=True))
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks) == "Let me look.\n"
    assert "<tool_call>" not in "".join(ch.choices[0].delta.content or "" for ch in chunks)
    assert [ch.choices[0].finish_reason for ch in chunks][-1] == "tool_calls"


def test_streamed_plain_text_is_the_unstreamed_content(start, tokenizer):
    _, client = start(TemplateLLM(tokenizer, "No tool: <tool_call is not a call"))
    chunks = list(client.chat.completions.create(model="m", messages=[{"role": "user", "content": "q"}],
                                                 tools=TOOLS, stream=True))
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks) == "No tool: <tool_call is not a call"
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_tool_choice_named_and_required_start_the_call_for_the_model(start, tokenizer):
    def reply(prompt):
        if prompt.endswith('{"name": "finish", "arguments": '):
            return '{"answer": "yes"}}\n</tool_call>'
        if prompt.endswith('<tool_call>\n{"name": "'):
            return 'search", "arguments": {"entity": "Y"}}\n</tool_call>'
        return "free text"

    _, client = start(TemplateLLM(tokenizer, reply))
    q = [{"role": "user", "content": "q"}]
    named = client.chat.completions.create(model="m", messages=q, tools=TOOLS,
                                           tool_choice={"type": "function", "function": {"name": "finish"}})
    assert json.loads(named.choices[0].message.tool_calls[0].function.arguments) == {"answer": "yes"}
    required = client.chat.completions.create(model="m", messages=q, tools=TOOLS, tool_choice="required")
    assert required.choices[0].message.tool_calls[0].function.name == "search"
    auto = client.chat.completions.create(model="m", messages=q, tools=TOOLS, tool_choice="auto")
    assert auto.choices[0].message.content == "free text"


def test_tool_choice_none_never_gives_calls(start, tokenizer):
    _, client = start(TemplateLLM(tokenizer, CALL))
    r = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "q"}], tools=TOOLS,
                                       tool_choice="none")
    assert (r.choices[0].message.content, r.choices[0].finish_reason) == (CALL, "stop")


@pytest.mark.parametrize("extra, message", [
    ({"tools": {"name": "x"}}, "'tools' has the wrong type"),
    ({"tools": [{"type": "function"}]}, "tools[0] must be"),
    ({"tools": [{"type": "function", "function": {"name": "a b"}}]}, "tools[0].function.name"),
    ({"tools": [{"type": "function", "function": {"name": "s", "parameters": {"type": "array"}}}]},
     "tools[0].function.parameters"),
    ({"tools": [tool("s", "a"), {"type": "function", "function": {"name": "t", "parameters": {
        "type": "object", "properties": {"a": {}, "b": {}}}}}]}, "tools[1] (t): this server reads calls of tools "
                                                                   "with one argument; it has 2"),
    ({"tools": [tool("s", "a"), tool("S", "a")]}, "a second tool named 'S'"),
    ({"tools": TOOLS, "tool_choice": "always"}, "'tool_choice' must be"),
    ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "fly"}}}, "names 'fly'"),
    ({"tool_choice": "required"}, "has no 'tools'"),
    ({"messages": [{"role": "assistant", "content": None, "tool_calls": [{"function": {"name": "s"}}]}]},
     "messages[0].tool_calls[0] must be"),
])
def test_bad_tools_are_a_clear_400(start, tokenizer, extra, message):
    server, _ = start(TemplateLLM(tokenizer, "x"))
    body = {"messages": [{"role": "user", "content": "q"}], **extra}
    r = httpx.post(server.url + "/v1/chat/completions", json=body)
    assert r.status_code == 400 and message in r.json()["error"]["message"]


def test_a_backend_without_a_template_refuses_tools(start):
    _, client = start(ScriptedLLM(["x"] * 3))
    with pytest.raises(openai.BadRequestError, match="tools not supported"):
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "q"}], tools=TOOLS)
    tool_turn = [{"role": "user", "content": "q"}, {"role": "tool", "tool_call_id": "call_1", "content": "r"}]
    with pytest.raises(openai.BadRequestError, match="tools not supported"):
        client.chat.completions.create(model="m", messages=tool_turn)
    plain = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "q"}])
    assert plain.choices[0].message.content == "x"


def test_a_real_model_serves_tool_requests(start, tiny_model_dir, one_thread):
    from reactlab.llm.hf import HFLLM

    _, client = start(HFLLM(tiny_model_dir, batch_size=2))
    q = [{"role": "user", "content": "Who is Milhouse?"}]
    r = client.chat.completions.create(model="m", messages=q, tools=TOOLS, max_tokens=8)
    assert r.choices[0].finish_reason in ("stop", "length") and r.choices[0].message.content  # random weights
    named = client.chat.completions.create(model="m", messages=q, tools=TOOLS, max_tokens=8, stream=True,
                                           tool_choice={"type": "function", "function": {"name": "finish"}})
    chunks = list(named)
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text.startswith('<tool_call>\n{"name": "finish", "arguments": ')  # the prefill, then random text
    assert r.usage.prompt_tokens > 100  # the rendered tools section, not just the question
