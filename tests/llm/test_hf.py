"""The transformers backend: batching and the prefix KV cache must not change a single greedy token."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from reactlab.llm.hf import HFLLM  # noqa: E402
from reactlab.types import LLM, GenParams  # noqa: E402

PREFIX = (
    "Question: Which magazine was started first, Arthur's Magazine or First for Women?\n"
    "Thought 1: I need to search Arthur's Magazine and First for Women, and find which was started first.\n"
    "Action 1: Search[Arthur's Magazine]\n"
    "Observation 1: Arthur's Magazine (1844-1846) was an American literary periodical.\n"
)
SUFFIXES = [
    "Question: Who?\nThought 1:",
    "Question: Were Scott Derrickson and Ed Wood of the same nationality?\nThought 1:",
    "Question: What is the elevation range for the area that the eastern sector of the Colorado orogeny "
    "extends into?\nThought 1: I need to search Colorado orogeny.\nAction 1:",
    "Question: Musician and satirist Allie Goertz wrote a song about which character?\nThought 1:",
    "Q",
]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return HFLLM(tiny_model_dir, batch_size=32)


def reference_ids(llm: HFLLM, prompt, max_new_tokens: int) -> list[int]:
    """Plain ``model.generate``, one prompt at a time: the ground truth."""
    import torch

    ids = torch.tensor([llm.encode(prompt)])
    out = llm.model.generate(
        ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens, do_sample=False
    )
    return out[0, ids.shape[1] :].tolist()


def test_is_an_llm(tiny):
    assert isinstance(tiny, LLM)


def test_batched_cached_and_unbatched_match_generate(tiny, tiny_model_dir):
    prompts = [PREFIX + s for s in SUFFIXES]
    params = GenParams(max_new_tokens=12)
    want = [reference_ids(tiny, p, 12) for p in prompts]
    tiny.reset_cache()
    cached = [ids for _, ids in tiny.generate_with_ids(prompts, params)]
    again = tiny.generate_with_ids(prompts, params)  # the prefix now comes from the LRU
    assert all(c.usage.cached_tokens > 0 for c, _ in again)
    plain = [ids for _, ids in HFLLM(tiny_model_dir, batch_size=32, prefix_cache=False)
             .generate_with_ids(prompts, params)]
    assert cached == want
    assert [ids for _, ids in again] == want
    assert plain == want


def test_grown_prompts_reuse_a_shorter_cached_prefix(tiny):
    params = GenParams(max_new_tokens=8)
    tiny.reset_cache()
    first = [PREFIX + s for s in SUFFIXES[:3]]
    tiny.generate(first, params)
    grown = [
        p + " I need to search it.\nAction 1: Search[x]\nObservation 1: nothing.\nThought 2:" for p in first
    ]
    got = tiny.generate_with_ids(grown, params)
    assert all(c.usage.cached_tokens > 0 for c, _ in got)
    assert [ids for _, ids in got] == [reference_ids(tiny, p, 8) for p in grown]
    # A single prompt caches all but its last token; its next, longer self reuses all of that.
    one = tiny.generate_with_ids([grown[0]], params)
    two = tiny.generate_with_ids([grown[0] + " more"], params)
    assert two[0][0].usage.cached_tokens >= len(tiny.encode(grown[0])) - 1
    assert one[0][1] == reference_ids(tiny, grown[0], 8)
    assert two[0][1] == reference_ids(tiny, grown[0] + " more", 8)


def test_small_batches_and_caller_order(tiny_model_dir):
    llm = HFLLM(tiny_model_dir, batch_size=2)
    prompts = [PREFIX + s for s in SUFFIXES]
    got = llm.generate_with_ids(prompts, GenParams(max_new_tokens=6))
    assert [ids for _, ids in got] == [reference_ids(llm, p, 6) for p in prompts]


def test_length_limit(tiny):
    ((c, ids),) = tiny.generate_with_ids([PREFIX], GenParams(max_new_tokens=5))
    if ids[-1] not in tiny.eos_ids:
        assert c.finish_reason == "length" and c.stop is None
        assert c.usage.completion_tokens == len(ids) == 5
    assert tiny.generate([PREFIX], GenParams(max_new_tokens=0))[0].text == ""


def test_stop_strings(tiny):
    prompts = [PREFIX + s for s in SUFFIXES[:3]]
    free = tiny.generate(prompts, GenParams(max_new_tokens=20))
    text = free[1].text
    assert len(text) >= 6
    # A stop that starts inside a token: the text ends right before it.
    stop = text[3:5]
    (c,) = tiny.generate([prompts[1]], GenParams(max_new_tokens=20, stop=[stop]))
    assert (c.text, c.stop, c.finish_reason) == (text[: text.find(stop)], stop, "stop")
    assert stop not in c.text
    # Several stops: the earliest one in the text wins, whatever their order in the list.
    later = text[5:7]
    (c,) = tiny.generate([prompts[1]], GenParams(max_new_tokens=20, stop=[later, stop, "never-there"]))
    first = min((text.find(s), s) for s in (later, stop))
    assert (c.text, c.stop) == (text[: first[0]], first[1])
    # Rows of a batch stop independently; a row whose stop never appears runs to the limit.
    got = tiny.generate(prompts, GenParams(max_new_tokens=20, stop=[stop]))
    for g, f in zip(got, free, strict=True):
        assert g.text == (f.text[: f.text.find(stop)] if stop in f.text else f.text)


def test_chat_prompts(tiny):
    msgs = [{"role": "user", "content": "Who wrote Hamlet?"}]
    text = tiny.tokenizer.decode(tiny.encode(msgs))
    assert text.endswith("<|im_start|>user\nWho wrote Hamlet?<|im_end|>\n<|im_start|>assistant\n")
    cont = msgs + [{"role": "assistant", "content": "Thought: I need to"}]
    text = tiny.tokenizer.decode(tiny.encode(cont))
    assert text.endswith("<|im_start|>assistant\nThought: I need to")
    got = tiny.generate_with_ids([msgs, cont], GenParams(max_new_tokens=6))
    assert [ids for _, ids in got] == [reference_ids(tiny, m, 6) for m in (msgs, cont)]


def test_sampling_is_seeded(tiny):
    params = GenParams(max_new_tokens=10, temperature=1.0, top_p=0.9, seed=7)
    a = tiny.generate([PREFIX, PREFIX + "Q"], params)
    b = tiny.generate([PREFIX, PREFIX + "Q"], params)
    assert [c.text for c in a] == [c.text for c in b]


def _lora(model_dir: str, out, seed: int) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(model_dir)
    peft = get_peft_model(
        base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"])
    )
    torch.manual_seed(seed)
    with torch.no_grad():  # LoRA B starts at zero (a no-op adapter): make it matter
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    peft.save_pretrained(out)


def test_adapter(tiny, tiny_model_dir, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    _lora(tiny_model_dir, tmp_path / "lora", seed=1)
    llm = HFLLM(tiny_model_dir, adapter=str(tmp_path / "lora"))
    prompts = [PREFIX + s for s in SUFFIXES[:3]]
    params = GenParams(max_new_tokens=8)
    ours = [ids for _, ids in llm.generate_with_ids(prompts, params)]
    assert ours != [ids for _, ids in tiny.generate_with_ids(prompts, params)]
    ref = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir), tmp_path / "lora"
    ).eval()
    for p, got in zip(prompts, ours, strict=True):
        ids = torch.tensor([llm.encode(p)])
        want = ref.generate(
            input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=8, do_sample=False
        )
        assert got == want[0, ids.shape[1] :].tolist()


def test_wrong_adapter_fails_clearly(tiny_model_dir, tmp_path):
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    other = tmp_path / "other"
    cfg = LlamaConfig(
        vocab_size=len(AutoTokenizer.from_pretrained(tiny_model_dir)),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
    )
    LlamaForCausalLM(cfg).save_pretrained(other)
    _lora(str(other), tmp_path / "lora", seed=2)
    with pytest.raises(ValueError, match="does not fit the base model"):
        HFLLM(tiny_model_dir, adapter=str(tmp_path / "lora"))


@pytest.mark.slow
def test_smollm2_short_completion_and_batch(smollm2_dir):
    llm = HFLLM(smollm2_dir, name="smollm2")
    assert llm.name == "smollm2"
    params = GenParams(max_new_tokens=16, stop=["\nObservation"])
    prompts = [PREFIX + SUFFIXES[1], PREFIX + SUFFIXES[3]]
    batch = llm.generate_with_ids(prompts, params)
    assert batch[0][0].text.strip()
    for p, (_, ids) in zip(prompts, batch, strict=True):
        llm.reset_cache()
        assert llm.generate_with_ids([p], params)[0][1] == ids


def test_common_prefix_len():
    from reactlab.llm.engine import common_prefix_len

    assert common_prefix_len([[1, 2], [1, 3]]) == 1 and common_prefix_len([]) == 0
    assert common_prefix_len([[1, 2, 3], [1, 2, 3]]) == 3


def test_shorter_shared_prefix_served_from_a_longer_entry(tiny):
    params = GenParams(max_new_tokens=6)
    tiny.reset_cache()
    one = PREFIX + SUFFIXES[3]
    tiny.generate([one], params)  # caches all of `one` but its last token
    prompts = [PREFIX + s for s in SUFFIXES[:4]]
    got = tiny.generate_with_ids(prompts, params)
    shared = got[0][0].usage.cached_tokens
    assert shared >= len(tiny.encode(PREFIX)) - 2
    assert [ids for _, ids in got] == [reference_ids(tiny, p, 6) for p in prompts]


def test_missing_adapter_fails_clearly(tiny_model_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        HFLLM(tiny_model_dir, adapter=str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="not a PEFT adapter"):
        HFLLM(tiny_model_dir, adapter=str(tmp_path))


def _teacher_forced_logprobs(llm: HFLLM, prompt_ids: list[int], out: list[int], temperature: float = 1.0):
    """log p(out[j] | prompt + out[:j]) from one plain forward pass of the model."""
    import torch

    ids = torch.tensor([prompt_ids + out])
    with torch.inference_mode():
        logits = llm.model(ids).logits[0, len(prompt_ids) - 1 : -1].float() / temperature
    return torch.log_softmax(logits, -1).gather(-1, torch.tensor(out)[:, None])[:, 0].tolist()


@pytest.mark.parametrize("draft_tokens", [8, 0])
def test_completions_carry_token_ids_and_logprobs(tiny_model_dir, draft_tokens, monkeypatch):
    """What an RL trainer reads from a rollout: the prompt as fed, the tokens as generated, and each
    token's log-probability, equal to a plain forward pass's (drafts on or off; the drafts here are
    the true continuation with every third token wrong, so some are kept and some rolled back)."""
    from reactlab.llm.engine import scheduler

    llm = HFLLM(tiny_model_dir, batch_size=4, draft_tokens=draft_tokens)
    prompts = [PREFIX + s for s in SUFFIXES[:3]]
    truth = {tuple(llm.encode(p)): reference_ids(llm, p, 16) for p in prompts}

    def propose(ctx, k):
        ctx = ctx.tolist()
        (ids,) = [ids for ids in truth if ctx[: len(ids)] == list(ids)]
        true = truth[ids][len(ctx) - len(ids):][:k]
        return [t if i % 3 < 2 else (t + 1) % 1000 for i, t in enumerate(true)]

    monkeypatch.setattr(scheduler, "propose", propose)
    comps = llm.generate(prompts, GenParams(max_new_tokens=16))
    for p, c in zip(prompts, comps, strict=True):
        assert c.prompt_ids == llm.encode(p)
        assert c.completion_ids == reference_ids(llm, p, 16)
        assert len(c.logprobs) == len(c.completion_ids) and c.usage.completion_tokens == len(c.logprobs)
        want = _teacher_forced_logprobs(llm, c.prompt_ids, c.completion_ids)
        assert max(abs(a - b) for a, b in zip(c.logprobs, want, strict=True)) < 1e-4
    if draft_tokens:
        assert llm.engine.accepted > 0  # the logprobs of accepted draft tokens were checked too


def test_n_samples_are_seeded_and_carry_their_logprobs(tiny):
    params = GenParams(max_new_tokens=8, temperature=0.9, seed=7, n=4)
    (c,) = tiny.generate([PREFIX + SUFFIXES[1]], params)
    assert len(c.samples) == 4 and all(not s.samples for s in c.samples)
    assert (c.text, c.completion_ids) == (c.samples[0].text, c.samples[0].completion_ids)
    assert len({tuple(s.completion_ids) for s in c.samples}) > 1  # seeds 7, 8, 9, 10: different draws
    (again,) = tiny.generate([PREFIX + SUFFIXES[1]], params)
    assert [s.completion_ids for s in again.samples] == [s.completion_ids for s in c.samples]
    s = c.samples[2]
    want = _teacher_forced_logprobs(tiny, s.prompt_ids, s.completion_ids, temperature=0.9)
    assert max(abs(a - b) for a, b in zip(s.logprobs, want, strict=True)) < 1e-4
    # streamed: the key comes back once, when all n samples are done
    tiny.submit("k", PREFIX + SUFFIXES[1], params)
    got = []
    while len(got) < 1:
        got += tiny.poll()
    assert [k for k, _ in got] == ["k"] and [x.completion_ids for x in got[0][1].samples] == \
        [x.completion_ids for x in c.samples]


def test_a_tool_chat_renders_through_the_fallback_and_stops_after_the_call(tiny):
    """SmolLM2's template has no tool support: a ``ToolChat`` is rendered by the Hermes-style fallback
    (tools as JSON in the system turn, earlier calls as ``<tool_call>`` text, their answers as
    ``<tool_response>`` turns), and generation runs on it."""
    import json

    from reactlab.agents.tools import action_tools, tool_schemas
    from reactlab.llm.hf import render_tools_prompt, template_uses_tools
    from reactlab.types import ToolChat

    tools = tool_schemas(action_tools())
    call = {"id": "call_1", "type": "function",
            "function": {"name": "search", "arguments": json.dumps({"entity": "Milhouse"})}}
    chat = ToolChat([{"role": "system", "content": "Use the tools."},
                     {"role": "user", "content": "Who named Milhouse?"},
                     {"role": "assistant", "content": "Search it.", "tool_calls": [call]},
                     {"role": "tool", "tool_call_id": "call_1", "name": "search", "content": "Milhouse is a character."}],
                    tools)
    assert not template_uses_tools(tiny.tokenizer)
    text = tiny.tokenizer.decode(tiny.encode(chat))
    assert text == render_tools_prompt(tiny.tokenizer, chat, tools)
    for t in tools:
        assert json.dumps(t) in text
    assert 'Search it.\n<tool_call>\n{"name": "search", "arguments": {"entity": "Milhouse"}}\n</tool_call>' in text
    assert "<|im_start|>user\n<tool_response>\nMilhouse is a character.\n</tool_response><|im_end|>" in text
    assert text.index("Use the tools.") < text.index("<tools>") and text.endswith("<|im_start|>assistant\n")
    assert tiny.encode(list(chat)) != tiny.encode(chat)  # a plain list of the same messages has no tools
    [c] = tiny.generate([chat], GenParams(max_new_tokens=4))
    assert c.usage.prompt_tokens == len(tiny.encode(chat)) and c.usage.completion_tokens >= 1
