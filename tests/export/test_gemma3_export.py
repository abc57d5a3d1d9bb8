"""End to end on the embedded Gemma 3 270M: base + a perturbed LoRA adapter -> merged fp16 HF dir ->
GGUF f16 / q8_0 (``gemma3``) + Modelfile -> run by llama.cpp (llama-cpp-python, in a child process)
against transformers on the merged dir in fp32, fed the same tokens.

The reference GGUF is the one shipped with the model (made by llama.cpp's own converter from
google/gemma-3-270m, ``reactlab.models.gguf_path``): the export must write its metadata, tokenizer
and tensor layout (norm weights + 1), see ``reactlab.export.gguf_gemma3``.
"""

from __future__ import annotations

import importlib.util

import pytest

pytestmark = pytest.mark.slow
needs_llama_cpp = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python not installed"
)

PROMPTS = {
    "zh": "请把下面的英文句子翻译成中文：The cat jumps over the moon.",
    "en": "Name the capital of France and one river that flows through it.",
}
N_NEW = 16
# Reference keys that are provenance only (llama.cpp's converter copies them from the model card).
PROVENANCE = {"general.type", "general.basename", "general.size_label", "general.license", "general.tags"}


@pytest.fixture(scope="module")
def merged(gemma_export):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    res, _ = gemma_export
    tok = AutoTokenizer.from_pretrained(res.hf_dir)
    return AutoModelForCausalLM.from_pretrained(res.hf_dir, dtype=torch.float32).eval(), tok


@pytest.fixture(scope="module")
def reference(merged):
    """Per prompt: ``(chat ids, greedy continuation, logits at every position of both)``."""
    import torch

    model, tok = merged
    out = {}
    for lang, text in PROMPTS.items():
        ids = tok.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                      return_dict=True)["input_ids"]
        with torch.no_grad():
            gen = model.generate(torch.tensor([ids]), max_new_tokens=N_NEW, do_sample=False, eos_token_id=None,
                                 pad_token_id=tok.pad_token_id)
            greedy = gen[0, len(ids):].tolist()
            out[lang] = ids, greedy, model(torch.tensor([ids + greedy])).logits[0].numpy()
    return out


VOCAB = ("tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type")


def _fields(path, vocab: bool = True):
    """A GGUF's metadata (the three 262144-long vocabulary arrays only with ``vocab``: slow to read)
    and its reader."""
    from gguf import GGUFReader

    r = GGUFReader(path)
    return {k: (f.contents() if vocab or k not in VOCAB else None) for k, f in r.fields.items()
            if not k.startswith("GGUF.")}, r


def test_metadata_matches_the_reference_gguf(gemma_export):
    import numpy as np

    from reactlab.models import gguf_path

    res, _ = gemma_export
    ref, ref_r = _fields(gguf_path("gemma3-270m"))
    for outtype in ("f16", "q8_0"):  # the vocabulary is the same code's output in both: read it once
        got, got_r = _fields(res.out / f"model-{outtype}.gguf", vocab=outtype == "f16")
        assert set(got) - set(ref) == {"gemma3.rope.freq_base_swa", "tokenizer.chat_template"}
        assert set(ref) - set(got) == PROVENANCE
        assert got["gemma3.rope.freq_base_swa"] == 10000.0
        assert "<start_of_turn>" in got["tokenizer.chat_template"]
        big = {"tokenizer.ggml.scores", "general.file_type", "general.name"}
        for k in set(ref) - PROVENANCE - big:
            assert got[k] == ref[k] or (outtype != "f16" and k in VOCAB), k
        assert got["general.file_type"] == {"f16": 1, "q8_0": 7}[outtype]
        if outtype == "f16":
            # Scores: the same but a constant shift from id 236743 on (see gguf_gemma3): same order.
            gs, rs = np.array(got["tokenizer.ggml.scores"]), np.array(ref["tokenizer.ggml.scores"])
            normal = np.array(got["tokenizer.ggml.token_type"]) == 1
            shifted = normal & (np.arange(len(gs)) >= 236743)
            assert (gs[~shifted] == rs[~shifted]).all()
            assert (gs[shifted] - rs[shifted] == 31).all()
            assert (np.diff(gs[normal]) < 0).all() and (np.diff(rs[normal]) < 0).all()
        ref_t = {t.name: t for t in ref_r.tensors}
        got_t = {t.name: t for t in got_r.tensors}
        assert set(got_t) == set(ref_t) and "output.weight" not in got_t  # tied to token_embd
        assert all(got_t[n].shape.tolist() == ref_t[n].shape.tolist() for n in ref_t)
        # The adapter touches projections only: the norms must be the reference's (= HF's + 1).
        for n in ("output_norm.weight", "blk.0.attn_norm.weight", "blk.17.attn_q_norm.weight",
                  "blk.9.post_ffw_norm.weight"):
            np.testing.assert_allclose(np.asarray(got_t[n].data), np.asarray(ref_t[n].data), atol=1e-3)


def test_modelfile_uses_gemma_turns(gemma_export):
    res, _ = gemma_export
    text = (res.out / "Modelfile").read_text()
    assert text.splitlines()[:2] == ["# written by reactlab export (gemma chat template)", "FROM ./model-f16.gguf"]
    assert "<start_of_turn>model\n" in text and 'PARAMETER stop "<end_of_turn>"' in text
    assert "PARAMETER num_ctx 8192" in text


@needs_llama_cpp
def test_llama_cpp_tokenizes_a_chat_like_hf(gemma_export, merged):
    """Special tokens, Chinese, an emoji, runs of spaces (user-defined pieces) and of newlines."""
    from reactlab.export.llamacpp import probe_isolated

    res, _ = gemma_export
    _, tok = merged
    messages = [
        {"role": "system", "content": "Answer briefly.\n\nUse tools."},
        {"role": "user", "content": "两个整数 6 和 7 的最大公约数是多少？ 🙂"},
        {"role": "assistant", "content": "Thought: compute it.\n\n\nAction:  search[gcd  6 7]"},
        {"role": "user", "content": "def f(x):\n    return  x[::-1]\t# tab"},
    ]
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    want = tok(text, add_special_tokens=False).input_ids
    assert want[0] == tok.bos_token_id and 106 in want  # <bos> and <end_of_turn> parsed as special tokens
    got = probe_isolated(res.out / "model-f16.gguf", want[:1], text=text, n_ctx=256).tokens
    assert got == want


def _compare(got, want):
    import numpy as np

    diff = np.abs(got - want)
    return float((got.argmax(-1) == want.argmax(-1)).mean()), float(diff.max()), float(diff.mean())


@needs_llama_cpp
@pytest.mark.parametrize("outtype", ["f16", "q8_0"])
@pytest.mark.parametrize("lang", list(PROMPTS))
def test_llama_cpp_runs_gguf_like_transformers(gemma_export, reference, outtype, lang):
    """Teacher-forced at every position after <bos> (the chat prompt and transformers' greedy
    continuation), then llama.cpp's own greedy continuation.

    Thresholds: see the module doc of ``reactlab.export.gguf_gemma3`` for the measured figures.
    f16 holds exactly the merged weights, so only llama.cpp's kernels differ (f16 activations in its
    f16 matmuls, summation order): logits (up to ~100 in magnitude) move by hundredths on average and
    <0.5 at most, which flips no top-1 choice here; q8_0 also rounds weights and activations to
    8 bits: mean diff of a few tenths, a near-tie may flip, so >= 90% top-1.
    """
    from reactlab.export.llamacpp import probe_isolated

    res, _ = gemma_export
    ids, greedy, logits = reference[lang]
    path = res.out / f"model-{outtype}.gguf"
    forced = probe_isolated(path, ids[:1], forced=ids[1:] + greedy)
    agree, dmax, dmean = _compare(forced.logits[: len(logits)], logits)
    free = probe_isolated(path, ids, n_greedy=8).greedy
    print(f"{outtype} {lang}: top-1 {agree:.3f} max {dmax:.3f} mean {dmean:.4f} greedy {free == greedy[:8]}")
    if outtype == "f16":
        assert agree == 1.0 and dmax < 1.0 and dmean < 0.05, (agree, dmax, dmean)
        assert free == greedy[:8]
    else:
        assert agree >= 0.9 and dmean < 0.6, (agree, dmean)
