"""Loss masks: the trained tokens decode to exactly the assistant turns, with and without
``{% generation %}`` markers in the chat template."""

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
