"""Rollouts per minute during GRPO/RLOO: our engine vs TRL's own ``generate`` path, side by side.

    .venv/bin/python bench/rollout_throughput.py --adapter runs/demo/adapter --prompts DIR/train.jsonl \
        [--questions 4] [--group 8] [--max-steps 5] [--new 64]

Both arms run the very same code that makes GRPO's rollouts (``reactlab.train.rollout.run_rollouts``:
our ReAct agent in the chat layout, WikiEnv over the vendored index, each episode flattened into
one token sequence), on the same policy as GRPO holds it (the base + the SFT adapter, trainable and
unmerged, ``policy.load_policy``), the same ``--questions`` x ``--group`` episodes at temperature 1.
Only the sampler differs:

- ``engine``: ``HFLLM.from_model`` around the policy: continuous batching, every episode's next
  turn joins the batch as soon as its observation is in, shared-prefix KV, a turn's KV reused by
  the next turn (what ``train grpo`` / ``train rloo`` use);
- ``trl-generate``: what TRL's trainers do without vLLM: the prompts of a round left-padded into
  one batch and ``model.generate(...)`` (``do_sample``, the same temperature, ``top_k=0``), no KV
  kept between calls. TRL itself has no multi-turn loop for our text format (its tool loop needs
  JSON tool calls and one of its fixed chat templates), so the rounds are ours: every live episode's
  next turn in one ``generate`` call, which then runs until its slowest row ends (EOS or the
  ``\\nObservation`` stop string, checked by transformers' ``stop_strings``).

Prints, per arm: wall time, episodes/min, generated (model) tokens/s, mean turns per episode, and
the share of episodes that finished; then the ratio engine / trl-generate. Name the CPU with the
figures (printed first).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Hashable
from pathlib import Path
from typing import Any

from reactlab.hardware import describe_cpu
from reactlab.types import Completion, GenParams, Usage


class GenerateRounds:
    """The streaming interface ``run_rollouts`` drives (``submit_ids``/``poll``), served by plain
    ``model.generate`` on everything submitted since the last poll (one round)."""

    def __init__(self, model: Any, tokenizer: Any, stop: str = "\nObservation"):
        self.model, self.tokenizer, self.stop = model, tokenizer, stop
        self.eos_ids = {tokenizer.eos_token_id}
        self.queue: list[tuple[Hashable, list[int], GenParams]] = []

    def reset_cache(self) -> None:
        """Nothing is kept between calls."""

    def submit_ids(self, key: Hashable, ids: list[int], params: GenParams) -> None:
        self.queue.append((key, list(ids), params))

    def poll(self) -> list[tuple[Hashable, Completion]]:
        import torch

        batch, self.queue = self.queue, []
        if not batch:
            return []
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        width = max(len(ids) for _, ids, _ in batch)
        input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for _, ids, _ in batch])
        mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for _, ids, _ in batch])
        p = batch[0][2]
        torch.manual_seed(p.seed or 0)
        with torch.no_grad():
            out = self.model.generate(
                input_ids=input_ids, attention_mask=mask, max_new_tokens=p.max_new_tokens, do_sample=True,
                temperature=p.temperature, top_p=1.0, top_k=0, pad_token_id=pad, eos_token_id=list(self.eos_ids),
                stop_strings=[self.stop], tokenizer=self.tokenizer,
            )
        done = []
        for (key, ids, _), row in zip(batch, out[:, width:].tolist(), strict=True):
            new: list[int] = []
            for t in row:
                new.append(t)
                if t in self.eos_ids:
                    break
            while new and new[-1] == pad and pad not in self.eos_ids:
                new.pop()
            text = self.tokenizer.decode([t for t in new if t not in self.eos_ids], skip_special_tokens=False)
            text = text.split(self.stop)[0]
            done.append((key, Completion(text=text, usage=Usage(len(ids), len(new)), prompt_ids=ids,
                                         completion_ids=new, logprobs=[0.0] * len(new))))
        return done


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--adapter", required=True, help="the SFT adapter GRPO starts from")
    ap.add_argument("--prompts", required=True, help="`data build --format prompts` rows (train.jsonl)")
    ap.add_argument("--questions", type=int, default=4)
    ap.add_argument("--group", type=int, default=8, help="episodes per question (num_generations)")
    ap.add_argument("--max-steps", type=int, default=5)
    ap.add_argument("--new", type=int, default=64, help="max new tokens per model turn")
    args = ap.parse_args()

    import torch

    from reactlab.envs.wikienv import WikiEnv
    from reactlab.llm.hf import HFLLM
    from reactlab.train.policy import load_policy
    from reactlab.train.recipes import GRPORecipe
    from reactlab.train.rollout import RolloutSpec, run_rollouts
    from reactlab.wiki.index import get_index

    rows = [json.loads(line) for line in Path(args.prompts).read_text().splitlines() if line.strip()]
    prompts = [r["prompt"] for r in rows[: args.questions] for _ in range(args.group)]
    cfg = GRPORecipe(model={"name": args.model, "adapter": args.adapter}, data={"path": str(Path(args.prompts).parent)},
                     out="/tmp/unused")
    policy = load_policy(cfg)
    model, tok = policy.model, policy.tokenizer
    spec = RolloutSpec(multi_turn=True, max_steps=args.max_steps, max_new_tokens=args.new, temperature=1.0, seed=0)
    print(f"CPU: {describe_cpu()}; torch threads {torch.get_num_threads()}; {args.questions} questions x {args.group} "
          f"episodes, <= {args.max_steps} turns of <= {args.new} tokens, temperature 1")
    results = {}
    with get_index() as index:
        for name, llm in (("engine", HFLLM.from_model(model, tok)), ("trl-generate", GenerateRounds(model, tok))):
            t0 = time.perf_counter()
            outs = run_rollouts(llm, prompts, spec, lambda: WikiEnv(index))
            wall = time.perf_counter() - t0
            generated = sum(sum(r.env_mask) for r in outs)
            turns = sum(sum(1 for m in r.messages if m["role"] == "assistant") for r in outs) / len(outs)
            finished = sum(r.status == "finished" for r in outs) / len(outs)
            results[name] = len(outs) / wall * 60
            print(f"{name:13s} {wall:7.1f} s  {results[name]:6.1f} episodes/min  {generated / wall:6.1f} model tokens/s  "
                  f"{turns:.2f} turns/episode  finished {finished:.2f}")
    print(f"engine / trl-generate: {results['engine'] / results['trl-generate']:.2f}x episodes/min")


if __name__ == "__main__":
    main()
