"""The embedded Gemma 3 270M as reactlab runs it (the Q4_K_M GGUF dequantised to fp32 by
transformers' GGUF loader, ``reactlab.models.resolve``) against llama.cpp running the same GGUF file
(quantised kernels): teacher-forced logits and top-1 choices at every position of 8 prompts (Chinese
and English, in Gemma's chat layout), and a greedy continuation of each. llama.cpp runs in a child
process (a crash is a row, not the end of the script), with this CPU's settings
(``reactlab.export.llamacpp.model_defaults``: no extra buffer types on AMX CPUs).

    .venv/bin/python bench/gemma_gguf_parity.py [--greedy 32]
"""

from __future__ import annotations

import argparse

from reactlab.hardware import describe_cpu

PROMPTS = [
    "有一个方程的系数分别为A, B和C。如果B^2 - 4AC = 0，则方程有一个实数解。当A=1, B=2, C=1时，方程有几个实数解？",
    "下述为五个人的出生顺序问题。Julio出生早于Gloria。哪个人是第一个出生的？",
    "请把下面的英文句子翻译成中文：The cat jumps over the moon.",
    "两个整数 6 和 7 的最大公约数是多少？请逐步推理。",
    "What is the output of \"abc\"[::-1] in Python 3?",
    "What is produced during photosynthesis? A. hydrogen B. nylon C. oxygen D. light",
    "Name the capital of France and one river that flows through it.",
    "Explain in one sentence why the sky is blue.",
]


def first_difference(a: list[int], b: list[int]) -> int:
    """The index of the first token where two sequences differ (the shorter length if one is a prefix)."""
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--greedy", type=int, default=32, help="tokens of greedy continuation compared per prompt")
    ap.add_argument("--prompts", type=int, default=len(PROMPTS), help="how many of the 8 prompts (4 Chinese first)")
    args = ap.parse_args()
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from reactlab.export.llamacpp import model_defaults, probe_isolated
    from reactlab.isolate import ChildCrashed
    from reactlab.models import gguf_path, resolve

    print(f"CPU: {describe_cpu()}; "
          f"llama.cpp settings: {model_defaults()}")
    hf_dir, gguf = resolve("gemma3-270m"), gguf_path("gemma3-270m")
    tok = AutoTokenizer.from_pretrained(hf_dir)
    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
    rows, agree, total, same_greedy = [], 0, 0, 0
    prompts = PROMPTS[:4][: (args.prompts + 1) // 2] + PROMPTS[4:][: args.prompts // 2]
    for text in prompts:
        ids = tok.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                      return_dict=True)["input_ids"]
        with torch.no_grad():
            out = model.generate(torch.tensor([ids]), max_new_tokens=args.greedy, do_sample=False,
                                 eos_token_id=None, pad_token_id=tok.pad_token_id)
        hf_greedy = out[0, len(ids):].tolist()
        prompt, forced = ids[:1], ids[1:] + hf_greedy  # every position after BOS, teacher-forced
        with torch.no_grad():
            hf_logits = model(torch.tensor([ids + hf_greedy])).logits[0].numpy()
        try:
            p = probe_isolated(gguf, ids, forced=[], n_greedy=args.greedy, n_ctx=1024)
            q = probe_isolated(gguf, prompt, forced=forced, n_ctx=1024)
        except ChildCrashed as e:
            rows.append((text[:24], f"llama.cpp crashed: {e}", "", "", ""))
            continue
        cpp = q.logits[: len(hf_logits)]
        top_hf, top_cpp = hf_logits.argmax(-1), cpp.argmax(-1)
        agree += int((top_hf == top_cpp).sum())
        total += len(top_hf)
        same = p.greedy == hf_greedy
        same_greedy += same
        diff = np.abs(hf_logits - cpp)
        rows.append((text[:24], f"{(top_hf == top_cpp).mean():.3f}", f"{diff.max():.3f}", f"{diff.mean():.4f}",
                     "yes" if same else f"no (first difference at token {first_difference(p.greedy, hf_greedy)})"))
    print("\n| prompt | top-1 agreement | max abs logit diff | mean abs diff | greedy equal |")
    print("|---|---:|---:|---:|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    if total:
        print(f"\ntop-1 agreement over {total} teacher-forced positions: {agree / total:.3f}; "
              f"greedy continuations ({args.greedy} tokens) equal: {same_greedy}/{len(prompts)}")


if __name__ == "__main__":
    main()
