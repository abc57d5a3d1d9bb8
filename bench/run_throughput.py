"""Runner throughput: batched + prefix-cached ReAct vs the paper-style loop, side by side.

Both arms run the same ReAct agent (few-shot completion prompt, greedy) on the same eval questions
with the same model:

- paper: one question at a time, each call a plain ``model.generate`` on the full prompt (batch 1,
  nothing reused between calls; stop strings via ``generate(stop_strings=...)``), as the ReAct
  notebooks and most naive scripts do
- ours:  ``HFLLM`` + the runner: continuous batching, the few-shot prefix encoded once and attended
  in place (cascade attention), each episode's KV kept between its calls, prompt-lookup drafts
- ours without drafts (``draft_tokens=0``): what the rest is worth alone

Prints questions/min for each arm, their ratio (target >= 10x), and the share of questions whose
final answers are identical (target >= 95%; greedy decoding, so differences come only from
floating-point summation order between batched and single-row kernels).

    .venv/bin/python bench/run_throughput.py --n 20 [--model smollm2] [--out runs/bench-throughput]
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from reactlab.agents.react import ReActAgent
from reactlab.envs.wikienv import WikiEnv
from reactlab.llm.cpu_kernels import use_onednn_linear
from reactlab.llm.hf import HFLLM, _eos_ids
from reactlab.llm.stops import find_stop
from reactlab.models import NAMED, resolve
from reactlab.runner import RunSpec, run
from reactlab.tasks.hotpotqa import HotpotQA
from reactlab.types import Completion, Usage
from reactlab.wiki.index import get_index


class PaperLLM:
    """The paper-style loop's model: ``model.generate`` on one full prompt at a time."""

    def __init__(self, path: str, name: str):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.name = name
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype="float32").eval()  # stock SDPA attention
        # The same matmul kernels as HFLLM's (oneDNN on a CPU), so the ratio measures the runner's
        # design (batching, KV reuse), not a kernel choice.
        use_onednn_linear(self.model)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.eos_ids = _eos_ids(self.model, self.tokenizer)

    def generate(self, prompts, params):
        import torch

        out = []
        for p in prompts:
            ids = torch.tensor([self.tokenizer(p).input_ids])
            with torch.inference_mode():
                gen = self.model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                          max_new_tokens=params.max_new_tokens, stop_strings=list(params.stop),
                                          tokenizer=self.tokenizer, pad_token_id=self.tokenizer.eos_token_id)
            new = gen[0, ids.shape[1]:].tolist()
            if new and new[-1] in self.eos_ids:
                new = new[:-1]
            text = self.tokenizer.decode(new, skip_special_tokens=False)
            hit = find_stop(text, params.stop)
            c = Completion(text=text[: hit[0]] if hit else text, stop=hit[1] if hit else None,
                           finish_reason="stop" if hit or len(new) < params.max_new_tokens else "length")
            c.usage = Usage(prompt_tokens=ids.shape[1], completion_tokens=len(new))
            out.append(c)
        return out


def arm(name: str, llm, batch_size: int, examples, index, out: Path) -> tuple[float, dict]:
    shutil.rmtree(out / name, ignore_errors=True)
    agent = ReActAgent(model=llm.name)
    spec = RunSpec("hotpotqa", "eval", agent.name, llm.name, agent.prompt_id, extra={"arm": name})
    t0 = time.perf_counter()
    summary = run(examples, agent, HotpotQA(), lambda: WikiEnv(index), out / name, spec, llms=llm,
                  batch_size=batch_size, progress=True)
    wall = time.perf_counter() - t0
    answers = {}
    with open(out / name / "trajectories.jsonl") as f:
        for line in f:
            d = json.loads(line)
            answers[d["id"]] = d["answer"]
    return wall, {"summary": summary, "answers": answers}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--out", type=Path, default=Path("runs/bench-throughput"))
    args = ap.parse_args()
    path = resolve(args.model) if args.model in NAMED else args.model
    examples = HotpotQA().examples("eval", limit=args.n)
    index = get_index()

    ours_llm = HFLLM(path, name=args.model, batch_size=32, prefix_cache=True)
    t_ours, ours = arm("ours", ours_llm, len(examples), examples, index, args.out)
    del ours_llm
    plain_llm = HFLLM(path, name=args.model, batch_size=32, prefix_cache=True, draft_tokens=0)
    t_plain, plain = arm("ours-nodraft", plain_llm, len(examples), examples, index, args.out)
    del plain_llm
    t_paper, paper = arm("paper", PaperLLM(path, args.model), 1, examples, index, args.out)

    n = len(examples)
    same = sum(paper["answers"][e.id] == ours["answers"][e.id] for e in examples)
    qpm_paper, qpm_ours = n / t_paper * 60, n / t_ours * 60
    print()
    print(f"questions: {n}  model: {args.model}")
    print(f"paper-style (batch 1, no KV reuse): {t_paper:8.1f} s  {qpm_paper:6.2f} q/min  EM {paper['summary'].main:.3f}")
    print(f"continuous batching + KV reuse:     {t_ours:8.1f} s  {qpm_ours:6.2f} q/min  EM {ours['summary'].main:.3f}")
    print(f"  the same without drafts:          {t_plain:8.1f} s  {n / t_plain * 60:6.2f} q/min  EM {plain['summary'].main:.3f}")
    print(f"speed-up (q/min ratio): {qpm_ours / qpm_paper:.1f}x   (target >= 10x; without drafts {t_paper / t_plain:.1f}x)")
    print(f"identical final answers: {same}/{n} = {same / n:.1%}   (target >= 95%)")
    same_plain = sum(paper["answers"][e.id] == plain["answers"][e.id] for e in examples)
    print(f"  without drafts: {same_plain}/{n}")
    for e in examples:
        if paper["answers"][e.id] != ours["answers"][e.id]:
            print(f"  differs {e.id}: paper={paper['answers'][e.id]!r} ours={ours['answers'][e.id]!r}")


if __name__ == "__main__":
    main()
