"""bench/run_throughput.py: the transformers continuous-batching backend's batching and stop cutting,
around a fake ``generate_batch`` (no model, no torch kernels run)."""

from types import SimpleNamespace

import pytest

from reactlab.types import GenParams

EOS = 0


@pytest.fixture(scope="module")
def bench(load_bench):
    return load_bench("run_throughput")


class CharTok:
    """One token per character (id = code point), EOS = 0."""

    eos_token_id = EOS
    pad_token_id = None

    def __call__(self, text):
        return SimpleNamespace(input_ids=[ord(c) for c in text])

    def decode(self, ids, skip_special_tokens=False):
        return "".join(chr(i) for i in ids)


class FakeModel:
    """``generate_batch`` continues every prompt with a fixed text (per prompt), as transformers
    returns it: a dict in input order, one ``GenerationOutput``-like object per prompt."""

    def __init__(self, continuations, error=None):
        self.continuations = continuations
        self.error = error
        self.generation_config = SimpleNamespace(eos_token_id=EOS)
        self.calls = []

    def generate_batch(self, inputs, generation_config=None, continuous_batching_config=None, **kw):
        self.calls.append((inputs, generation_config, continuous_batching_config, kw))
        out = {}
        for i, ids in enumerate(inputs):
            text = self.continuations["".join(chr(t) for t in ids)]
            toks = [EOS if c == "\0" else ord(c) for c in text][: generation_config.max_new_tokens]
            out[f"req_{i}"] = SimpleNamespace(generated_tokens=toks, error=self.error)
        return out


def test_one_call_per_batch_cut_at_stops(bench):
    model = FakeModel({"Q1": " go\nObservation 1: x", "Q2": " done\0", "Q3": " long text, longer still"})
    llm = bench.TransformersCBLLM("unused", "fake", model=model, tokenizer=CharTok())
    params = GenParams(max_new_tokens=16, stop=["\nObservation", "\n"])
    cs = llm.generate(["Q1", "Q2", "Q3"], params)
    assert len(model.calls) == 1  # the whole runner step in one generate_batch
    inputs, gc, cbc, kw = model.calls[0]
    assert inputs == [[ord("Q"), ord("1")], [ord("Q"), ord("2")], [ord("Q"), ord("3")]]
    assert (gc.do_sample, gc.max_new_tokens, gc.eos_token_id) == (False, 16, EOS)
    assert kw["warmup"] is False and cbc.max_batch_tokens == 512
    assert cbc.num_blocks >= 3  # at least a page per row
    # earliest stop wins, the longest at a tie; the text before it is kept
    assert (cs[0].text, cs[0].stop, cs[0].finish_reason) == (" go", "\nObservation", "stop")
    # EOS ends a row: dropped from the text
    assert (cs[1].text, cs[1].stop, cs[1].finish_reason) == (" done", None, "stop")
    # no stop, no EOS within max_new_tokens
    assert (cs[2].text, cs[2].stop, cs[2].finish_reason) == (" long text, long", None, "length")
    assert (cs[0].usage.prompt_tokens, cs[0].usage.completion_tokens) == (2, 16)


def test_empty_batch_and_unsupported_params(bench):
    model = FakeModel({})
    llm = bench.TransformersCBLLM("unused", "fake", model=model, tokenizer=CharTok())
    assert llm.generate([], GenParams()) == [] and model.calls == []
    with pytest.raises(NotImplementedError):
        llm.generate(["Q"], GenParams(temperature=0.7))
    with pytest.raises(NotImplementedError):
        llm.generate(["Q"], GenParams(n=2))


def test_failed_requests_raise(bench):
    model = FakeModel({"Q": " x"}, error="boom")
    llm = bench.TransformersCBLLM("unused", "fake", model=model, tokenizer=CharTok())
    with pytest.raises(RuntimeError, match="boom"):
        llm.generate(["Q"], GenParams())
