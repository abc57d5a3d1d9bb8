"""The batching engine on CUDA in bf16: its greedy tokens equal ``model.generate``'s, one prompt at
a time, for a tiny model; where they part, the first divergence must be a near-tie of the reference's
top two logits (bf16 rounding, ``TIE``), and it is reported with its logit gap."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU (CUDA)")]

TIE = 0.125
"""A bf16 near-tie: two logits this close can swap under another summation order (bf16 keeps 8
significant bits: 0.125 is one step at magnitude 16-32)."""

PROMPTS = ["The capital of France is", "Question: Who wrote Hamlet?\nThought:", "1, 2, 3, 4,", "Once upon a time"]


def test_greedy_tokens_match_generate(tiny_qwen2):
    from transformers import AutoModelForCausalLM

    from reactlab.llm.hf import HFLLM
    from reactlab.types import GenParams

    n = 48
    llm = HFLLM(tiny_qwen2, dtype="bfloat16", device="cuda", batch_size=len(PROMPTS), draft_tokens=0)
    ours = llm.generate(PROMPTS, GenParams(max_new_tokens=n))
    ref_model = AutoModelForCausalLM.from_pretrained(tiny_qwen2, dtype=torch.bfloat16).to("cuda").eval()
    report = []
    for prompt, c in zip(PROMPTS, ours, strict=True):
        ids = torch.tensor([c.prompt_ids], device="cuda")
        out = ref_model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, do_sample=False,
                                 output_scores=True, return_dict_in_generate=True)
        ref = out.sequences[0, ids.size(1):].tolist()
        got = list(c.completion_ids or [])
        k = next((i for i, (a, b) in enumerate(zip(got, ref, strict=False)) if a != b), None)
        if k is None:  # equal as far as both go (each ends at EOS or n tokens)
            assert len(got) == len(ref), (prompt, got, ref)
            continue
        top2 = out.scores[k][0].float().topk(2).values
        gap = (top2[0] - top2[1]).item()
        report.append(f"{prompt!r}: first divergence at token {k}, reference top-2 logit gap {gap:.4f}")
        assert gap <= TIE, report[-1]
    print("\n".join(report) or f"all {len(PROMPTS)} prompts: {n} greedy tokens identical")
