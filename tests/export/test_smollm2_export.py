"""End to end on the embedded SmolLM2: base + a perturbed LoRA adapter -> merged fp16 HF dir ->
GGUF f16 / q8_0 -> read back by transformers' GGUF loader and run by llama.cpp (llama-cpp-python).

The reference is the merged fp16 HF dir loaded in fp32: the f16 GGUF carries exactly its weights,
so any difference comes from the export (names, Q/K permutation, metadata), not from rounding.
"""

from __future__ import annotations

import importlib.util
import json

import pytest

pytestmark = pytest.mark.slow

MESSAGES = [{"role": "user", "content": "Question: What is the capital of France?"}]
N_NEW = 32


@pytest.fixture(scope="module")
def reference(smollm2_export):
    """``(prompt ids, logits, greedy continuation ids)`` of the merged HF dir, in fp32."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    res, _ = smollm2_export
    tok = AutoTokenizer.from_pretrained(res.hf_dir)
    ids = tok.apply_chat_template(
        MESSAGES, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )["input_ids"]
    model = AutoModelForCausalLM.from_pretrained(res.hf_dir, dtype=torch.float32).eval()
    return ids, *_run(model, ids)


def _run(model, ids):
    import torch

    with torch.no_grad():
        logits = model(ids).logits[0]
        out = model.generate(ids, max_new_tokens=N_NEW, do_sample=False, eos_token_id=None, pad_token_id=2)
    return logits, out[0, ids.shape[1] :].tolist()


def _gguf_model(path):
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()


def test_export_layout_and_adapter_effect(smollm2_export, smollm2_dir, reference):
    import torch
    from transformers import AutoModelForCausalLM

    res, adapter = smollm2_export
    assert sorted(p.name for p in res.files) == ["hf", "model-f16.gguf", "model-q8_0.gguf"]
    assert json.loads((res.hf_dir / "reactlab_export.json").read_text())["adapter"] == adapter
    assert (res.out / "Modelfile").read_text().splitlines()[1] == "FROM ./model-f16.gguf"
    assert res.ollama_command in (res.out / "README.md").read_text()
    ids, logits, _ = reference
    base = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        assert (base(ids).logits[0] - logits).abs().max() > 0.5  # the merge changed the model


def test_f16_gguf_logits_match(smollm2_export, reference):
    res, _ = smollm2_export
    ids, logits, greedy = reference
    got, got_greedy = _run(_gguf_model(res.out / "model-f16.gguf"), ids)
    assert (got - logits).abs().max().item() < 1e-2
    assert got_greedy == greedy


def test_q8_0_gguf_greedy_matches(smollm2_export, reference):
    res, _ = smollm2_export
    ids, logits, greedy = reference
    got, got_greedy = _run(_gguf_model(res.out / "model-q8_0.gguf"), ids)
    # Measured: mean |diff| 0.2-0.36, max ~1.5 (logits ~25); the 32 greedy tokens are identical.
    assert (got - logits).abs().mean().item() < 0.5
    assert got_greedy == greedy


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python not installed")
@pytest.mark.parametrize("outtype", ["f16", "q8_0"])
def test_llama_cpp_runs_gguf_like_transformers(smollm2_export, reference, outtype):
    """llama.cpp loads the file and tokenizes the chat prompt exactly as transformers does; fed the
    prompt + transformers' greedy continuation, its next-token choices are the same at every step
    (teacher forcing, so one near-tie cannot derail the rest), and its own greedy text matches.

    Measured (fp32 transformers on the merged fp16 dir as reference): f16: max |logit diff| 0.05,
    mean 0.008, top-1 agreement 100%; q8_0 (llama.cpp also quantises the activations to 8 bits
    in its q8_0 matmuls): mean 0.28, max 2.0, top-1 agreement 100% under teacher forcing. Free
    running, both answer "The capital of France is Paris.<|im_end|>" exactly as transformers;
    past the end of turn q8_0 drifts after 19 tokens ("I'm" vs "I am"), f16 after 31-32.
    """
    import numpy as np
    import torch
    from llama_cpp import Llama
    from transformers import AutoTokenizer

    res, _ = smollm2_export
    ids, _, greedy = reference
    full = ids[0].tolist() + greedy
    llm = Llama(
        str(res.out / f"model-{outtype}.gguf"), n_ctx=512, n_threads=2, logits_all=True, verbose=False
    )
    try:
        tok = AutoTokenizer.from_pretrained(res.hf_dir)
        assert llm.tokenize(tok.decode(ids[0]).encode(), add_bos=False, special=True) == ids[0].tolist()
        llm.eval(full)
        got = np.asarray(llm.scores[: len(full)])
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(res.hf_dir, dtype=torch.float32).eval()
        with torch.no_grad():
            want = model(torch.tensor([full])).logits[0].numpy()
        n = ids.shape[1]
        agree = (got[n - 1 : -1].argmax(-1) == want[n - 1 : -1].argmax(-1)).mean()
        diff = np.abs(got - want)
        if outtype == "f16":
            assert agree == 1.0 and diff.max() < 0.25 and diff.mean() < 0.05, (agree, diff.max(), diff.mean())
        else:
            assert agree >= 0.9 and diff.mean() < 0.5, (agree, diff.mean())
        # Free-running greedy text up to the end of the turn (what a user gets back). Past
        # <|im_end|> the model rambles through near-ties where f16 vs fp32 accumulation can flip
        # a token (seen: 31/32 equal), so the 32-token comparison is the teacher-forced one above.
        answer = greedy[: greedy.index(tok.eos_token_id) + 1] if tok.eos_token_id in greedy else greedy
        out = []
        for t in llm.generate(ids[0].tolist(), top_k=1, temp=0.0, repeat_penalty=1.0, reset=True):
            out.append(t)
            if len(out) == len(answer):
                break
        assert tok.decode(out) == tok.decode(answer) and out == answer
    finally:
        llm.close()
