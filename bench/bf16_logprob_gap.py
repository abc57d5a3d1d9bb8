"""Does bf16 autocast in the RL loss skew the importance ratio against the engine's fp32 log-probs?

GRPO/RLOO take the engine's log-probabilities (fp32, the weights that sampled) as the old policy;
the loss's forward under ``trl.bf16`` computes the new policy's in bf16 autocast. Before the first
optimizer step the two policies are the same weights, so every departure of the ratio
``exp(logp_bf16 - logp_fp32)`` from 1 is rounding, not learning, and PPO's clip (``epsilon`` 0.2)
counts it as movement. This prints, over the completion tokens of real ReAct episodes (a run's
trajectories, rebuilt as the agent's completion prompts): the mean and 99th percentile of
``|logp_bf16 - logp_fp32|``, the share of tokens whose ratio leaves [1-eps, 1+eps], and the same
between two fp32 forwards (the floor: 0) and against a forward in bf16 on a CPU without fast bf16
(slow, so only where ``hardware.bf16_matmuls_fast``).

    .venv/bin/python bench/bf16_logprob_gap.py runs/budget-react-train [--episodes 32] [--model smollm2]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="a run directory whose trajectories give the episodes")
    ap.add_argument("--episodes", type=int, default=32)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--epsilon", type=float, default=0.2)
    args = ap.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from reactlab.budget.calls import episode_prompt
    from reactlab.hardware import bf16_matmuls_fast, describe_cpu
    from reactlab.models import parse_model
    from reactlab.types import Trajectory

    print(f"CPU: {describe_cpu()}; bf16 matmuls fast: {bf16_matmuls_fast()}; torch threads {torch.get_num_threads()}")
    path = parse_model(args.model).path()
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    pairs = []  # (prompt, completion) per model call
    for line in (args.run / "trajectories.jsonl").read_text(encoding="utf-8").splitlines()[: args.episodes]:
        t = Trajectory.from_dict(json.loads(line))
        for s in t.steps:
            prompt = episode_prompt(t, s.i)
            if prompt and s.raw:
                pairs.append((prompt, " " + s.raw.strip()))

    def logps(prompt: str, completion: str, bf16: bool) -> torch.Tensor:
        p = tok(prompt, return_tensors="pt")["input_ids"]
        c = tok(completion, return_tensors="pt", add_special_tokens=False)["input_ids"]
        ids = torch.cat([p, c], 1)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(ids).logits[0, p.shape[1] - 1: -1].float()
        return torch.log_softmax(logits, -1).gather(1, c[0, :, None])[:, 0]

    gaps, floor = [], []
    for prompt, completion in pairs:
        ref = logps(prompt, completion, False)
        gaps.append(logps(prompt, completion, True) - ref)
        floor.append(logps(prompt, completion, False) - ref)
    for name, d in (("fp32 vs fp32", torch.cat(floor)), ("bf16 autocast vs fp32", torch.cat(gaps))):
        a = d.abs()
        out = ((d.exp() - 1).abs() > args.epsilon).float().mean().item()
        print(f"{name:<22} tokens {a.numel():5d}  mean |dlogp| {a.mean().item():.4f}  p99 {a.quantile(0.99).item():.4f}  "
              f"max {a.max().item():.3f}  ratio outside 1+-{args.epsilon}: {out:.2%}  "
              f"mean dlogp {d.mean().item():+.4f}")
    print(f"{len(pairs)} calls of {args.episodes} episodes from {args.run}")


if __name__ == "__main__":
    main()
