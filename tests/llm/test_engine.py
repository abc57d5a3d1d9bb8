"""The batching engine: ragged rows, a shared prefix attended in place, retained rows, chunked
prefill, rows joining mid-decode. Every arrangement must give one-at-a-time ``generate``'s tokens."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from reactlab.llm import cpu_kernels, engine  # noqa: E402
from reactlab.llm.engine import attention, drafts, scheduler  # noqa: E402
from reactlab.llm.hf import HFLLM  # noqa: E402
from reactlab.types import GenParams, StreamingLLM  # noqa: E402

PREFIX = (
    "Question: Which magazine was started first, Arthur's Magazine or First for Women?\n"
    "Thought 1: I need to search Arthur's Magazine and First for Women.\nAction 1: Search[Arthur's Magazine]\n"
    "Observation 1: Arthur's Magazine (1844-1846) was an American literary periodical.\n"
)
TAILS = ["Question: Who?\nThought 1:", "Question: Were Scott Derrickson and Ed Wood of the same nationality?\n",
         "Question: What is the elevation range?\nThought 1: I need to search Colorado orogeny.\nAction 1:", "Q"]


def reference(llm: HFLLM, prompt: str, n: int) -> list[int]:
    ids = torch.tensor([llm.encode(prompt)])
    with torch.inference_mode():
        out = llm.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, do_sample=False)
    return out[0, ids.shape[1]:].tolist()


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return HFLLM(tiny_model_dir, batch_size=8)


def drain(llm: HFLLM, want: set) -> dict:
    got = {}
    while want - got.keys():
        got.update(dict(llm.poll()))
    return got


def test_is_a_streaming_llm(tiny):
    assert isinstance(tiny, StreamingLLM)


def test_rows_joining_mid_decode_and_prefix_sharing(tiny):
    tiny.reset_cache()
    params = GenParams(max_new_tokens=10)
    prompts = [PREFIX + t for t in TAILS]
    want = {i: reference(tiny, p, 10) for i, p in enumerate(prompts)}
    tiny.submit(0, prompts[0], params)
    tiny.submit(1, prompts[1], params)  # two rows together: their shared prefix is encoded once
    for _ in range(3):
        tiny._advance()  # the first two are decoding when the others arrive
    assert len(tiny.engine.prefixes) == 1
    tiny.submit(2, prompts[2], params)
    tiny.submit(3, prompts[3], params)
    got = drain(tiny, {0, 1, 2, 3})
    assert [got[i].text for i in range(4)] == [tiny._finish(want[i], params).text for i in range(4)]
    shared = min(c.usage.cached_tokens for c in got.values())
    assert shared >= len(tiny.encode(PREFIX)) - 2  # late rows found the frozen prefix
    assert [ids for _, ids in tiny.generate_with_ids(prompts, params)] == [want[i] for i in range(4)]


def test_texts_of_streamed_rows_match_generate(tiny):
    tiny.reset_cache()
    params = GenParams(max_new_tokens=8)
    prompts = [PREFIX + t for t in TAILS]
    batch = tiny.generate(prompts, params)
    tiny.reset_cache()
    for i, p in enumerate(prompts):
        tiny.submit(("s", i), p, params)
    got = drain(tiny, {("s", i) for i in range(4)})
    assert [got[("s", i)].text for i in range(4)] == [c.text for c in batch]


def test_chunked_prefill_and_a_single_row_cap(tiny_model_dir):
    llm = HFLLM(tiny_model_dir, batch_size=1, prefill_chunk=5)  # rows queue; prompts go in 5-token pieces
    prompts = [PREFIX + t for t in TAILS]
    got = llm.generate_with_ids(prompts, GenParams(max_new_tokens=6))
    assert [ids for _, ids in got] == [reference(llm, p, 6) for p in prompts]


def test_an_episode_reuses_its_own_earlier_kv(tiny):
    tiny.reset_cache()
    params = GenParams(max_new_tokens=6)
    first = [PREFIX + t for t in TAILS[:3]]
    outs = tiny.generate(first, params)
    grown = [p + c.text + "\nObservation 1: nothing here.\nThought 2:" for p, c in zip(first, outs, strict=True)]
    got = tiny.generate_with_ids(grown, params)
    for p, (c, _) in zip(first, got, strict=True):
        assert c.usage.cached_tokens >= len(tiny.encode(p)) - 1  # everything up to the old prompt's end
    assert [ids for _, ids in got] == [reference(tiny, p, 6) for p in grown]
    assert len(tiny.engine.retained) == 3


def test_prefix_cache_off_reuses_nothing(tiny_model_dir):
    llm = HFLLM(tiny_model_dir, batch_size=4, prefix_cache=False)
    prompts = [PREFIX + t for t in TAILS]
    got = llm.generate_with_ids(prompts, GenParams(max_new_tokens=5))
    again = llm.generate_with_ids(prompts, GenParams(max_new_tokens=5))
    assert all(c.usage.cached_tokens == 0 for c, _ in got + again)
    assert [ids for _, ids in again] == [ids for _, ids in got] == [reference(llm, p, 5) for p in prompts]


def test_slots_grow_past_their_first_capacity(tiny):
    tiny.reset_cache()
    long = PREFIX * 3 + TAILS[1]
    params = GenParams(max_new_tokens=200)  # capacity starts at prompt + 64 columns
    ((c, ids),) = tiny.generate_with_ids([long], params)
    assert ids == reference(tiny, long, 200)


@pytest.mark.parametrize("arch", ["qwen2"])
def test_other_architectures(make_tiny, arch):
    llm = HFLLM(make_tiny(arch), batch_size=4)
    prompts = [PREFIX + t for t in TAILS]
    got = llm.generate_with_ids(prompts, GenParams(max_new_tokens=8))
    assert [ids for _, ids in got] == [reference(llm, p, 8) for p in prompts]


def test_outside_an_engine_step_the_model_is_plain_sdpa(tiny, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    stock = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="sdpa").eval()
    ids = torch.tensor([tiny.encode(PREFIX), tiny.encode(PREFIX[::-1])[: len(tiny.encode(PREFIX))]])
    mask = torch.ones_like(ids)
    mask[1, :3] = 0  # a padded row: the mask must still be honoured
    with torch.inference_mode():
        a = tiny.model(input_ids=ids, attention_mask=mask, labels=ids)
        b = stock(input_ids=ids, attention_mask=mask, labels=ids)
    assert torch.allclose(a.logits, b.logits, atol=1e-5)


def brute(q, k, v, scale, hide, g):
    """Reference attention: ``q`` [kvh, n*g, d] (token-major), keys [kvh, L, d], ``hide`` [n, L]."""
    s = (q @ k.transpose(1, 2)) * scale
    if hide is not None:
        s = s.view(s.shape[0], -1, g, s.shape[-1]).masked_fill(hide[:, None], float("-inf")).view_as(s)
    p = torch.softmax(s, -1).nan_to_num(0.0)
    return torch.logsumexp(s, -1, keepdim=True), p @ v


@pytest.mark.parametrize("softcap", [None, 5.0])
@pytest.mark.parametrize("masked", ["none", "causal", "window"])
def test_attention_parts_and_their_merge_are_exact(softcap, masked):
    torch.manual_seed(0)
    kvh, g, n, L, d = 2, 3, 4, 11, 8
    q, k, v = torch.randn(kvh, g * n, d), torch.randn(kvh, L, d), torch.randn(kvh, L, d)
    rows, cols = torch.arange(L - n, L), torch.arange(L)
    hide = None if masked == "none" else cols[None] > rows[:, None]
    if masked == "window":
        hide = hide | ((rows[:, None] - cols[None]) >= 3)
    lse, o = attention._part(q, k, v, 0.3, hide, g, softcap)
    if softcap:  # reference with soft-capped scores
        s = torch.tanh((q @ k.transpose(1, 2)) * 0.3 / softcap) * softcap
        if hide is not None:
            s = s.view(kvh, n, g, L).masked_fill(hide[:, None], float("-inf")).view_as(s)
        want_lse, want = torch.logsumexp(s, -1, keepdim=True), torch.softmax(s, -1) @ v
    else:
        want_lse, want = brute(q, k, v, 0.3, hide, g)
    assert torch.allclose(o, want, atol=1e-5) and torch.allclose(lse, want_lse, atol=1e-4)
    # Splitting the keys in two parts and merging by log-sum-exp gives the whole.
    if not softcap:
        h1 = None if hide is None else hide[:, :5]
        h2 = None if hide is None else hide[:, 5:]
        l1, o1 = attention._part(q, k[:, :5], v[:, :5], 0.3, h1, g, None)
        l2, o2 = attention._part(q, k[:, 5:], v[:, 5:], 0.3, h2, g, None)
        both = torch.logaddexp(l1, l2)
        merged = o1 * torch.exp(l1 - both) + o2 * torch.exp(l2 - both)
        assert torch.allclose(merged, want, atol=1e-5)


def test_rows_decoding_over_as_many_keys_are_one_batched_call_with_the_same_result():
    """``_batch_decoding``: rows of one token over the same number of own keys go through one call;
    a row with another length or several tokens is left for its own call; results equal ``_part``'s."""
    torch.manual_seed(0)
    kvh, g, d = 2, 3, 8
    lens = [5, 9, 5, 5]  # rows 0, 2, 3 batch together; row 1 alone; a 2-token row is left too
    slots = [scheduler.Slot(kv=torch.randn(1, 2, kvh, 16, d)) for _ in range(5)]
    segs = [scheduler.Seg(row=None, slot=sl, c0=L - 1, n=1, t0=i) for i, (sl, L) in enumerate(zip(slots[:4], lens, strict=True))]
    segs.append(scheduler.Seg(row=None, slot=slots[4], c0=3, n=2, t0=4))
    qt = torch.randn(kvh, 6, g, d)
    lse, o = torch.full((kvh, 6, g, 1), 7.0), torch.full((kvh, 6, g, d), 7.0)
    rest = attention._batch_decoding(qt, 0, segs, 0, lse, o, 0.3)
    assert rest == [segs[4], segs[1]]
    assert torch.all(o[:, [1, 4, 5]] == 7.0)  # left alone
    for s in (segs[0], segs[2], segs[3]):
        L = s.c0 + 1
        want_lse, want = attention._part(qt[:, s.t0], s.slot.keys[0][:, :L], s.slot.values[0][:, :L], 0.3, None, g, None)
        assert torch.allclose(o[:, s.t0], want, atol=1e-6) and torch.allclose(lse[:, s.t0], want_lse, atol=1e-5)


def test_a_fully_hidden_part_weighs_nothing():
    q, k, v = torch.randn(1, 2, 4), torch.randn(1, 3, 4), torch.randn(1, 3, 4)
    lse, o = attention._part(q, k, v, 1.0, torch.ones(2, 3, dtype=torch.bool), 1, None)
    assert torch.all(o == 0) and torch.all(lse < -1e29)


def test_empty_prompt_is_refused(tiny):
    with pytest.raises(ValueError, match="empty prompt"):
        tiny.engine.submit("x", [], GenParams())


def test_supported():
    class Cfg:
        is_encoder_decoder = True

        def get_text_config(self, decoder=True):
            return self

    class M:
        config = Cfg()

    assert "encoder-decoder" in engine.supported(M())


def test_sliding_window_layers(smollm2_dir, tmp_path):
    """Qwen2 with every layer on an 8-token window: rows longer than the window, a shared prefix
    longer than the window, and decoding past it must all match the stock masks."""
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, initializer_range=0.2,
                      use_sliding_window=True, sliding_window=8, max_window_layers=0,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    Qwen2ForCausalLM(cfg).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    llm = HFLLM(str(tmp_path), batch_size=4, prefill_chunk=16)
    assert all(t == "sliding_attention" for t in llm.model.config.layer_types)
    prompts = [PREFIX + t for t in TAILS]
    got = llm.generate_with_ids(prompts, GenParams(max_new_tokens=12))
    assert len(llm.engine.prefixes) == 1
    assert [ids for _, ids in got] == [reference(llm, p, 12) for p in prompts]


def test_onednn_linear_swap_keeps_the_logits(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    stock = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    fast = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    n = cpu_kernels.use_onednn_linear(fast)
    if not torch.backends.mkldnn.is_available():
        assert n == 0
        return
    assert n == 2 * 7 + 1  # q k v o gate up down per layer, and the output head
    assert not any(type(m) is torch.nn.Linear for m in fast.modules())
    assert fast.lm_head.weight is fast.model.embed_tokens.weight  # still tied, not copied
    ids = torch.arange(5, 40)[None]
    with torch.inference_mode():
        assert torch.allclose(stock(ids).logits, fast(ids).logits, atol=1e-4)


def test_drafts_are_verified_and_rolled_back(tiny_model_dir, monkeypatch):
    """Drafts that are right for two tokens, then wrong: the right ones are kept (fewer steps),
    the wrong one and everything after it are dropped from the row's KV, and every token is still
    the reference's; a prompt grown from such a row (its retained, rolled-back KV) is right too."""
    llm = HFLLM(tiny_model_dir, batch_size=4)
    prompts = [PREFIX + t for t in TAILS[:3]]
    params = GenParams(max_new_tokens=20)
    want = {tuple(llm.encode(p)): reference(llm, p, 20) for p in prompts}

    def draft(ctx, k):
        ctx = ctx.tolist()
        (ids,) = [ids for ids in want if ctx[: len(ids)] == list(ids)]
        true = want[ids][len(ctx) - len(ids):][:k]
        return true[:2] + [(t + 1) % 1000 for t in true[2:3]] + true[3:]  # third token wrong

    monkeypatch.setattr(scheduler, "propose", draft)
    got = llm.generate_with_ids(prompts, params)
    assert [ids for _, ids in got] == [want[tuple(llm.encode(p))] for p in prompts]
    assert llm.engine.drafted > 0 and 0 < llm.engine.accepted < llm.engine.drafted
    assert llm.engine.steps < 20  # two accepted draft tokens per step: far fewer than 20 steps
    monkeypatch.undo()
    grown = [p + c.text + " and more" for p, (c, _) in zip(prompts, got, strict=True)]
    assert [ids for _, ids in llm.generate_with_ids(grown, params)] == [reference(llm, p, 20) for p in grown]
    off = HFLLM(tiny_model_dir, batch_size=4, draft_tokens=0)
    assert [ids for _, ids in off.generate_with_ids(prompts, params)] == [ids for _, ids in got]
    assert off.engine.drafted == 0


def test_a_stop_inside_an_accepted_draft_ends_the_row_there(tiny_model_dir):
    llm = HFLLM(tiny_model_dir, batch_size=1)
    prompt = (PREFIX + TAILS[0]) * 2
    (free,) = llm.generate([prompt], GenParams(max_new_tokens=24))
    words = free.text.split()
    if len(words) < 3:
        pytest.skip("the tiny model wrote too little to place a stop")  # never seen; guards the test
    stop = " " + words[2]
    (c,) = llm.generate([prompt], GenParams(max_new_tokens=24, stop=[stop]))
    assert c.stop == stop and c.text == free.text[: free.text.index(stop)]


def test_draft_lookup():
    from array import array

    assert drafts.propose(array("H", [5, 6, 7, 8, 9, 1, 5, 6, 7]), 3) == [8, 9, 1]  # after the earlier "5 6 7"
    assert drafts.propose(array("H", [1, 2, 3]), 3) == []
    # [513, 1027] is bytes 01 02 03 04; so are the middle bytes of 256, 770, 4: that unaligned
    # (false) match is the more recent one and must be skipped for the real one at the start.
    assert drafts.propose(array("H", [513, 1027, 8, 256, 770, 4, 55, 513, 1027]), 2) == [8, 256]
