"""Benchmark the transformers backend on a ReAct-like workload: what batching and the prefix cache buy.

    .venv/bin/python bench/hf_generate.py [--model smollm2] [--n 16] [--new 48] [--prefix-tokens 1500]

Workload: a shared few-shot prefix of about ``--prefix-tokens`` tokens (rendered from
``agents/prompts/hotpotqa_react.yaml`` when it is there, else synthetic ReAct text) followed by
``--n`` distinct questions; greedy, ``--new`` tokens at most, stopped at ``\\nObservation``.

- A: one prompt at a time with plain ``model.generate`` (the paper's way: no batch, no cache);
- B: ``HFLLM.generate`` on the whole batch, KV reuse off (every row encodes its whole prompt);
- C: ``HFLLM.generate`` on the whole batch with KV reuse (cold: the shared prefix is encoded once
  and attended in place by every row);
- C2: the agent's next step: every prompt grown by its own output and an observation (each row
  reuses its own earlier KV, so only the new tokens are encoded).

Prints wall time, generated tokens/s, the speed-ups B/A and C/A, and the share of prompts whose
greedy output is identical between A and C (same token ids).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from reactlab.llm.hf import HFLLM
from reactlab.types import GenParams

STOP = "\nObservation"
SUBJECTS = [
    "the Eiffel Tower", "Ada Lovelace", "the Danube", "Kerry Saxby-Junna", "the Battle of Hastings",
    "Mount Kilimanjaro", "the Rosetta Stone", "Marie Curie", "Lake Baikal", "the Great Fire of London",
    "Johannes Kepler", "the Sahara", "the Magna Carta", "Nikola Tesla", "the Amazon River",
    "Frida Kahlo", "the Berlin Wall", "Alan Turing", "the Colosseum", "Srinivasa Ramanujan",
    "the Hubble Space Telescope", "Hokusai", "the Suez Canal", "Rosalind Franklin", "Machu Picchu",
    "the Treaty of Westphalia", "Carl Linnaeus", "the Panama Canal", "Hypatia", "the Trans-Siberian Railway",
    "Chinua Achebe", "the Acropolis",
]  # fmt: skip
TEMPLATES = [
    "In which year was {} founded or born?",
    "Which country is {} located in or associated with?",
    "What is {} best known for?",
    "Who is most closely associated with {}?",
]


def few_shot_prefix(tokenizer, target: int) -> str:
    """About ``target`` tokens of paper-style exemplars (whole exemplars, repeated if needed)."""
    path = Path(__file__).resolve().parents[1] / "src/reactlab/agents/prompts/hotpotqa_react.yaml"
    blocks = []
    head = "Solve a question answering task with interleaving Thought, Action, Observation steps.\n"
    if path.is_file():
        import yaml

        spec = yaml.safe_load(path.read_text())
        head = spec.get("instruction", {}).get("react", head)
        for ex in spec.get("examples", []):
            lines = [f"Question: {ex['question']}"]
            for i, s in enumerate(ex["steps"], 1):
                lines += [f"Thought {i}: {s['thought']}", f"Action {i}: {s['action']}"]
                if "observation" in s:
                    lines.append(f"Observation {i}: {s['observation']}")
            blocks.append("\n".join(lines) + "\n")
    if not blocks:
        blocks = [
            f"Question: What is {s} known for?\nThought 1: I need to search {s}.\n"
            f"Action 1: Search[{s}]\nObservation 1: {s} is widely known, and its history is long.\n"
            f"Thought 2: So the answer is its history.\nAction 2: Finish[its history]\n"
            for s in SUBJECTS
        ]
    text, i = head, 0
    while len(tokenizer(text).input_ids) < target:
        text += blocks[i % len(blocks)] + "\n"
        i += 1
    return text


def run_a(llm: HFLLM, prompts: list[str], new: int) -> tuple[float, list[list[int]]]:
    """Plain ``model.generate`` one prompt at a time, stopped at STOP."""
    import torch

    out = []
    t = time.perf_counter()
    for p in prompts:
        ids = torch.tensor([llm.encode(p)])
        with torch.inference_mode():
            g = llm.model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=new,
                do_sample=False,
                stop_strings=[STOP],
                tokenizer=llm.tokenizer,
            )
        out.append(g[0, ids.shape[1] :].tolist())
    return time.perf_counter() - t, out


def run_hf(llm: HFLLM, prompts: list[str], new: int):
    t = time.perf_counter()
    got = llm.generate_with_ids(prompts, GenParams(max_new_tokens=new, stop=[STOP]))
    return time.perf_counter() - t, got


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2", help="a name in reactlab.models.NAMED or an HF dir")
    ap.add_argument("--n", type=int, default=16, help="distinct questions (rows)")
    ap.add_argument("--new", type=int, default=48, help="max new tokens")
    ap.add_argument("--prefix-tokens", type=int, default=1500)
    ap.add_argument("--skip-a", action="store_true", help="skip the slow one-at-a-time baseline")
    args = ap.parse_args()

    from reactlab.models import NAMED, resolve

    path = resolve(args.model) if args.model in NAMED else args.model
    llm = HFLLM(path, name=args.model, batch_size=32)
    nocache = HFLLM(path, name=args.model, batch_size=32, prefix_cache=False)  # every row encodes its whole prompt
    prefix = few_shot_prefix(llm.tokenizer, args.prefix_tokens)
    questions = [TEMPLATES[i % len(TEMPLATES)].format(SUBJECTS[i % len(SUBJECTS)]) for i in range(args.n)]
    prompts = [f"{prefix}Question: {q}\nThought 1:" for q in questions]
    lens = [len(llm.encode(p)) for p in prompts]
    print(
        f"model {args.model}: {args.n} prompts, {min(lens)}-{max(lens)} tokens, shared prefix ~{args.prefix_tokens}"
    )

    def report(label: str, wall: float, ids: list[list[int]], extra: str = "") -> None:
        toks = sum(len(x) for x in ids)
        print(f"{label:<34} {wall:8.1f} s  {toks:5d} new tokens  {toks / wall:7.1f} tok/s  {extra}")

    wall_a = ids_a = None
    if not args.skip_a:
        wall_a, ids_a = run_a(llm, prompts, args.new)
        report("A  one at a time, generate()", wall_a, ids_a)
    wall_b, got_b = run_hf(nocache, prompts, args.new)
    report("B  batched, no prefix cache", wall_b, [x for _, x in got_b])
    llm.reset_cache()
    wall_c, got_c = run_hf(llm, prompts, args.new)
    report("C  batched + prefix cache (cold)", wall_c, [x for _, x in got_c])
    # The agent's next step: each prompt grows by its own output and an observation.
    grown = [
        f"{p}{c.text}\nObservation 1: {SUBJECTS[i % len(SUBJECTS)]} is described in many sources.\nThought 2:"
        for i, (p, (c, _)) in enumerate(zip(prompts, got_c, strict=True))
    ]
    wall_c2, got_c2 = run_hf(llm, grown, args.new)
    cached = sum(c.usage.cached_tokens for c, _ in got_c2) / len(got_c2)
    report(
        "C2 next step, warm prefix cache", wall_c2, [x for _, x in got_c2], f"(cached {cached:.0f} tok/row)"
    )
    wall_b2, got_b2 = run_hf(nocache, grown, args.new)
    report("B2 next step, no prefix cache", wall_b2, [x for _, x in got_b2])

    ids_c = [x for _, x in got_c]
    same_bc = sum(b == c for (_, b), c in zip(got_b, ids_c, strict=True))
    print(f"identical B vs C: {same_bc}/{args.n}")
    if ids_a is not None:
        # generate() keeps the token that completed the stop string; ours stops at the same token.
        same = sum(a == c for a, c in zip(ids_a, ids_c, strict=True))
        print(
            f"speed-up B/A {wall_a / wall_b:.2f}x   C/A {wall_a / wall_c:.2f}x   C2/A {wall_a / wall_c2:.2f}x"
        )
        print(f"identical greedy outputs A vs C: {same}/{args.n} ({100 * same / args.n:.0f}%)")
        for i, (a, c) in enumerate(zip(ids_a, ids_c, strict=True)):
            if a != c:
                k = next(
                    (j for j, (x, y) in enumerate(zip(a, c, strict=False)) if x != y), min(len(a), len(c))
                )
                print(f"  row {i}: first difference at new token {k} (A {len(a)} tokens, C {len(c)})")


if __name__ == "__main__":
    main()
