"""Loss masks: the trained tokens decode to exactly the assistant turns, with and without
``{% generation %}`` markers in the chat template."""

import copy

import pytest

from reactlab.data.formats import chat_messages, to_completion
from reactlab.data.masking import IGNORE, has_generation_markers, mask_completion, mask_conversation
from reactlab.types import Action, Step, Trajectory

TRAJ = Trajectory(
    id="q1", task="hotpotqa", question="Where was the director of Ed Wood born?", gold="Burbank", agent="react",
    prompt_id="", model="", answer="Burbank", steps=[
        Step(1, "I need to search Ed Wood (film).", Action("search", "Ed Wood (film)"),
             "Ed Wood is a 1994 film directed by Tim Burton — “biopic”."),
        Step(2, "Tim Burton was born in Burbank.", Action("lookup", "born"), "(Result 1 / 1) Born in Burbank, 1958."),
        Step(3, "So the answer is Burbank.", Action("finish", "Burbank"), "Episode finished."),
    ])
SYSTEM_DEFAULT = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
# SmolLM2's ChatML template with the assistant content and its <|im_end|> inside {% generation %}
MARKED = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\n" + SYSTEM_DEFAULT + "<|im_end|>\\n' }}{% endif %}"
    "{% if message['role'] == 'assistant' %}{{ '<|im_start|>assistant\\n' }}"
    "{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\\n' }}"
    "{% else %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def runs(enc):
    """Contiguous runs of trained tokens."""
    out, cur = [], []
    for tok, lab in zip(enc["input_ids"], enc["labels"], strict=True):
        if lab == IGNORE:
            if cur:
                out.append(cur)
            cur = []
        else:
            assert lab == tok
            cur.append(tok)
    return out + ([cur] if cur else [])


def decode(tok, ids):
    return tok.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)


@pytest.mark.parametrize("system", [None, "Answer with the tools."])
@pytest.mark.parametrize("template", ["smollm2", "marked"])
def test_labels_decode_to_the_assistant_turns_byte_for_byte(smol_tok, template, system):
    messages = chat_messages(TRAJ, system)
    chat_template = MARKED if template == "marked" else None
    assert has_generation_markers(MARKED) and not has_generation_markers(smol_tok.chat_template)
    enc = mask_conversation(smol_tok, messages, "assistant", chat_template=chat_template)
    want = [m["content"] + "<|im_end|>" for m in messages if m["role"] == "assistant"]
    # one run per assistant turn, each exactly its content and the end-of-turn token
    got = [decode(smol_tok, r) for r in runs(enc)]
    assert [g.encode("utf-8") for g in got] == [w.encode("utf-8") for w in want]
    labelled = [t for t, lab in zip(enc["input_ids"], enc["labels"], strict=True) if lab != IGNORE]
    assert decode(smol_tok, labelled).encode("utf-8") == "".join(want).encode("utf-8")
    # the ids are the template's own tokenization; nothing else is trained
    assert enc["input_ids"] == smol_tok.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
    assert enc["attention_mask"] == [1] * len(enc["input_ids"])


def test_both_paths_agree_on_smollm2(smol_tok):
    messages = chat_messages(TRAJ)
    assert mask_conversation(smol_tok, messages) == mask_conversation(smol_tok, messages, chat_template=MARKED)


def test_train_on_all_and_errors(smol_tok):
    messages = chat_messages(TRAJ)
    enc = mask_conversation(smol_tok, messages, "all")
    assert enc["labels"] == enc["input_ids"]
    with pytest.raises(ValueError, match="train_on"):
        mask_conversation(smol_tok, messages, "prompt")
    with pytest.raises(ValueError, match="no assistant turn"):
        mask_conversation(smol_tok, messages[:1])
    unstable = "{% for m in messages %}{% if loop.last %}LAST {% endif %}{{ m['content'] }}\n{% endfor %}"
    with pytest.raises(ValueError, match="not prefix-stable"):
        mask_conversation(smol_tok, messages, chat_template=unstable)


def test_completion_masks(smol_tok):
    row = to_completion(TRAJ)
    enc = mask_completion(smol_tok, row["prompt"], row["completion"], "all")
    assert decode(smol_tok, runs(enc)[0]) == row["completion"] + "<|im_end|>" and len(runs(enc)) == 1
    enc = mask_completion(smol_tok, row["prompt"], row["completion"], "assistant")
    no_obs = "".join(line for line in (row["completion"] + "<|im_end|>").splitlines(keepends=True)
                     if not line.startswith("Observation"))
    assert "".join(decode(smol_tok, r) for r in runs(enc)) == no_obs


def test_gemma_turns_end_at_end_of_turn(gemma_dir):
    """Gemma's EOS is <eos>, its turns end with <end_of_turn>: the label span stops there."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gemma_dir)
    msgs = [{"role": "user", "content": "题目"}, {"role": "assistant", "content": "步骤1：想。\n答案是:B"}]
    enc = mask_conversation(tok, msgs)
    trained = tok.decode([t for t, lab in zip(enc["input_ids"], enc["labels"], strict=True) if lab != -100])
    assert trained == "步骤1：想。\n答案是:B<end_of_turn>"


# --- tool conversations --------------------------------------------------------------------------


def _tool_row(system):
    from reactlab.data.formats import to_messages_tools

    traj = Trajectory(**{**TRAJ.__dict__, "steps": [
        TRAJ.steps[0], Step(2, "", Action("lookup", "born"), TRAJ.steps[1].observation), TRAJ.steps[2]]})
    return to_messages_tools(traj, system=system)  # step 2: a call without a thought


@pytest.mark.parametrize("system", [None, "Answer with the tools."])
@pytest.mark.parametrize("template", ["smollm2", "qwen2.5"])
def test_tool_rows_train_the_calls_not_the_tool_results(smol_tok, template, system):
    """SmolLM2's ChatML has no tools (the fallback), Qwen2.5's iterates them (TRL ships it): either way
    the trained tokens are exactly each assistant turn's thought, ``<tool_call>`` block and end of turn,
    and the ids are the tokens of ``render_tools_prompt``'s text."""
    trl_templates = pytest.importorskip("trl.chat_template_utils")
    from reactlab.agents.tools import hermes_text, render_tools_prompt
    from reactlab.data.formats import row_tools
    from reactlab.data.masking import mask_tool_conversation

    row = _tool_row(system)
    tok = smol_tok
    if template == "qwen2.5":
        tok = copy.copy(smol_tok)
        tok.chat_template = trl_templates.qwen2_5_chat_template
    enc = mask_tool_conversation(tok, row["messages"], row_tools(row))
    assistant = [m for m in row["messages"] if m["role"] == "assistant"]
    want = [hermes_text(m) + "<|im_end|>" for m in assistant]
    assert [decode(tok, r) for r in runs(enc)] == want
    assert want[1].startswith("<tool_call>\n") and '"arguments": {"keyword": "born"}' in want[1]
    text = render_tools_prompt(tok, row["messages"], row_tools(row), add_generation_prompt=False)
    assert enc["input_ids"] == tok(text, add_special_tokens=False)["input_ids"]
    trained = decode(tok, [t for t, lab in zip(enc["input_ids"], enc["labels"], strict=True) if lab != IGNORE])
    assert "<tool_response>" in text and "<tool_response>" not in trained and "Tim Burton" not in trained
    assert ("# Tools" in text) and ("# Tools" not in trained)


def test_tool_rows_with_generation_markers(smol_tok):
    """TRL's Qwen2.5 training template marks the assistant turns itself: its mask is the same calls
    (with the newlines its block holds), still without the tool results."""
    trl_templates = pytest.importorskip("trl.chat_template_utils")
    from reactlab.agents.tools import hermes_text
    from reactlab.data.formats import row_tools
    from reactlab.data.masking import mask_tool_conversation

    row = _tool_row(None)
    enc = mask_tool_conversation(smol_tok, row["messages"], row_tools(row),
                                 chat_template=trl_templates.qwen2_5_training_chat_template)
    want = "".join("\n" + hermes_text(m) + "<|im_end|>\n" for m in row["messages"] if m["role"] == "assistant")
    assert decode(smol_tok, [t for r in runs(enc) for t in r]) == want


def test_tool_rows_train_on_all(smol_tok):
    from reactlab.agents.tools import render_tools_prompt
    from reactlab.data.formats import row_tools
    from reactlab.data.masking import mask_tool_conversation

    row = _tool_row("S")
    enc = mask_tool_conversation(smol_tok, row["messages"], row_tools(row), train_on="all")
    assert enc["labels"] == enc["input_ids"]
    assert decode(smol_tok, enc["input_ids"]) == render_tools_prompt(smol_tok, row["messages"], row_tools(row),
                                                                     add_generation_prompt=False)


def test_openai_tool_rows_mask_as_trl_tool_rows(smol_tok):
    """The same trajectory as ``openai-tools`` (arguments as JSON strings, no content on a bare call)
    and as ``messages-tools``: the same ids and labels."""
    from reactlab.data.formats import row_tools, to_row
    from reactlab.data.masking import mask_tool_conversation

    traj = Trajectory(**{**TRAJ.__dict__, "steps": [
        TRAJ.steps[0], Step(2, "", Action("lookup", "born"), TRAJ.steps[1].observation), TRAJ.steps[2]]})
    a, b = to_row("openai-tools", traj, system="S"), to_row("messages-tools", traj, system="S")
    assert "content" not in a["messages"][4] and isinstance(a["messages"][4]["tool_calls"][0]["function"]["arguments"], str)
    assert mask_tool_conversation(smol_tok, a["messages"], row_tools(a)) == mask_tool_conversation(
        smol_tok, b["messages"], row_tools(b))
