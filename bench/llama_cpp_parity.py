"""llama.cpp vs transformers on the embedded SmolLM2 exported to GGUF: the figures behind the
tolerances of tests/export/test_smollm2_export.py, on this CPU, with llama.cpp's extra buffer types
(weight repacking) as this CPU gets them and forced on and off. Every llama.cpp run is in a child
process, so a crash is printed as a row, not the end of the script.

    .venv/bin/python bench/llama_cpp_parity.py [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from reactlab.hardware import describe_cpu

MESSAGES = [{"role": "user", "content": "Question: What is the capital of France?"}]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None, help="export dir (default: a temp dir)")
    args = ap.parse_args()
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from reactlab.agents.react import ReActAgent
    from reactlab.export import export_model
    from reactlab.export.llamacpp import ENV_EXTRA_BUFTS, probe_isolated
    from reactlab.isolate import ChildCrashed
    from reactlab.tasks.hotpotqa import HotpotQA

    out = args.out or Path(tempfile.mkdtemp(prefix="llama-parity-"))
    if not (out / "model-q8_0.gguf").is_file():
        export_model("smollm2", out, gguf=["f16", "q8_0"], dtype="fp16")
    print(f"CPU: {describe_cpu()}")
    tok = AutoTokenizer.from_pretrained(out / "hf")
    model = AutoModelForCausalLM.from_pretrained(out / "hf", dtype=torch.float32).eval()
    ids = tok.apply_chat_template(MESSAGES, add_generation_prompt=True, return_dict=True)["input_ids"]
    with torch.no_grad():
        greedy = model.generate(torch.tensor([ids]), max_new_tokens=32, do_sample=False, eos_token_id=None,
                                pad_token_id=2)[0, len(ids):].tolist()
        want = model(torch.tensor([ids + greedy])).logits[0].numpy()[len(ids) - 1 : -1]
    react = f"{ReActAgent().prefix}Question: {HotpotQA().examples('eval', limit=1)[0].question}\nThought 1:"
    rids = tok(react)["input_ids"]
    with torch.no_grad():
        rwant = tok.decode(model.generate(torch.tensor([rids]), max_new_tokens=24, do_sample=False,
                                          pad_token_id=2)[0, len(rids):])
    print(f"transformers (fp32, merged fp16 weights), ReAct prompt of {len(rids)} tokens -> {rwant.strip()!r}")
    print("| file | extra buffer types | top-1 agreement | max abs diff | mean abs diff | ReAct words equal |")
    print("|---|---|---:|---:|---:|---:|")
    for outtype in ("f16", "q8_0"):
        for setting in ("auto", "1", "0"):
            if setting == "auto":
                os.environ.pop(ENV_EXTRA_BUFTS, None)
            else:
                os.environ[ENV_EXTRA_BUFTS] = setting
            gguf = out / f"model-{outtype}.gguf"
            try:
                p = probe_isolated(gguf, ids, forced=greedy, timeout=300)
                got = p.logits[:-1]
                r = tok.decode(probe_isolated(gguf, rids, n_greedy=24, n_ctx=4096, timeout=300).greedy)
            except ChildCrashed as e:
                print(f"| {outtype} | {setting} | crashed: {e} | | | |")
                continue
            diff = np.abs(got - want)
            words = rwant.strip().split()
            same = next((i for i, (a, b) in enumerate(zip(words, r.strip().split(), strict=False)) if a != b),
                        min(len(words), len(r.strip().split())))
            label = f"{setting} ({p.settings['use_extra_bufts']})" if setting == "auto" else setting
            print(f"| {outtype} | {label} | {(got.argmax(-1) == want.argmax(-1)).mean():.3f} | {diff.max():.3f} "
                  f"| {diff.mean():.4f} | {same}/{len(words)} |")
    os.environ.pop(ENV_EXTRA_BUFTS, None)


if __name__ == "__main__":
    main()
