"""Runner throughput: batched + prefix-cached ReAct vs the paper-style loop, side by side.

Both arms run the same ReAct agent (few-shot completion prompt, greedy) on the same eval questions
with the same model:

- paper: one question at a time, each call a plain ``model.generate`` on the full prompt (batch 1,
  nothing reused between calls; stop strings via ``generate(stop_strings=...)``), as the ReAct
  notebooks and most naive scripts do
- ours:  ``HFLLM`` + the runner: continuous batching, the few-shot prefix encoded once and attended
  in place (cascade attention), each episode's KV kept between its calls, prompt-lookup drafts
- ours without drafts (``draft_tokens=0``): what the rest is worth alone
- ours in bf16 (``dtype="bfloat16"``: weights, activations and KV in bf16, the rest as ``ours``):
  whether bf16 matmuls (AMX on recent Xeons) pay for the engine's mix of few-row decoding and
  chunked prefill, and how many greedy answers move
- transformers CB: the same runner and agent, the model behind ``TransformersCBLLM``: each runner
  step's prompts go to transformers' own continuous batching (``model.generate_batch``, its paged
  KV cache); it has no stop strings, so rows decode to EOS or ``max_new_tokens`` and are cut at
  the stop strings afterwards (``--arms`` picks arms; where ``generate_batch`` fails the arm prints
  that it was skipped and the error)

Prints questions/min for each arm, its ratio to the paper loop (to ``ours`` when ``paper`` is not
among ``--arms``; target for ours vs paper >= 10x), and the share of questions whose final answers
are identical (target >= 95%; greedy decoding, so differences come only from floating-point
summation order between batched and single-row kernels, and from bf16's rounding in ours-bf16).

    .venv/bin/python bench/run_throughput.py --n 20 [--model smollm2] [--out runs/bench-throughput]
        [--arms ours,ours-nodraft,ours-bf16,paper,transformers-cb]
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from reactlab.agents.react import ReActAgent
from reactlab.envs.wikienv import WikiEnv
from reactlab.hardware import bf16_matmuls_fast, cpu_name
from reactlab.llm.cpu_kernels import use_onednn_linear
from reactlab.llm.hf import HFLLM, _eos_ids
from reactlab.llm.stops import cut_at_stop, find_stop
from reactlab.models import NAMED, resolve
from reactlab.runner import RunSpec, run
from reactlab.tasks.hotpotqa import HotpotQA
from reactlab.types import Completion, GenParams, Usage
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


class TransformersCBLLM:
    """transformers' own continuous batching behind ``reactlab.types.LLM``: ``generate`` sends the
    whole batch to ``model.generate_batch`` (greedy, paged KV cache, a fresh manager per call, so no
    KV survives between runner steps) and cuts each output at the first stop string, as every
    reactlab backend does. ``generate_batch`` takes no stop strings: a row decodes until EOS or
    ``max_new_tokens``, and what follows its stop string is decoded for nothing. Greedy, ``n == 1``
    only (what this bench runs)."""

    def __init__(self, path: str, name: str, model=None, tokenizer=None):
        self.name = name
        if model is None:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            model = AutoModelForCausalLM.from_pretrained(path, dtype="float32").eval()
            use_onednn_linear(model)  # the same matmul kernels as the other arms
            tokenizer = AutoTokenizer.from_pretrained(path)
        self.model, self.tokenizer = model, tokenizer
        self.eos_ids = _eos_ids(self.model, self.tokenizer)

    def generate(self, prompts, params: GenParams) -> list[Completion]:
        if params.temperature > 0 or params.n != 1:
            raise NotImplementedError("TransformersCBLLM: greedy, one completion per prompt only")
        if not prompts:
            return []
        ids = [HFLLM.encode(self, p) for p in prompts]  # the tokenization HFLLM feeds
        outs = list(self.model.generate_batch(ids, generation_config=self.generation_config(params),
                                              continuous_batching_config=self.cb_config(ids, params),
                                              progress_bar=False, warmup=False).values())
        errors = [o.error for o in outs if o.error is not None]
        if len(outs) != len(ids) or errors:
            raise RuntimeError(f"generate_batch returned {len(outs)}/{len(ids)} results; errors: {errors[:3]}")
        res = []
        for p_ids, o in zip(ids, outs, strict=True):
            c = self.finish(list(o.generated_tokens), params)
            c.usage = Usage(prompt_tokens=len(p_ids), completion_tokens=len(o.generated_tokens))
            res.append(c)
        return res

    def cb_config(self, ids: list[list[int]], params: GenParams, page: int = 256):
        """The paged cache sized for this call's rows (left to itself on a CPU, transformers sizes it
        from the host's RAM and spends seconds zeroing it at every call); at most 512 tokens per
        forward pass, as HFLLM's prefill chunk."""
        from transformers import ContinuousBatchingConfig

        blocks = sum(-(-(len(i) + params.max_new_tokens) // page) for i in ids)
        return ContinuousBatchingConfig(page_size=page, num_blocks=blocks + len(ids), max_batch_tokens=512)

    def generation_config(self, params: GenParams):
        from transformers import GenerationConfig

        eos = sorted(self.eos_ids)
        return GenerationConfig(do_sample=False, max_new_tokens=params.max_new_tokens,
                                eos_token_id=eos if len(eos) > 1 else eos[0],
                                pad_token_id=self.tokenizer.pad_token_id if self.tokenizer.pad_token_id
                                is not None else eos[0])

    def finish(self, tokens: list[int], params: GenParams) -> Completion:
        """A row's generated ids as a Completion: EOS dropped, text cut at its first stop string;
        ``finish_reason`` as HFLLM gives it (a row that passed its stop string ends with "stop")."""
        eos = bool(tokens) and tokens[-1] in self.eos_ids
        text = self.tokenizer.decode(tokens[:-1] if eos else tokens, skip_special_tokens=False)
        text, stop = cut_at_stop(text, params.stop)
        return Completion(text=text, stop=stop, finish_reason="stop" if eos or stop else "length")


# Arms of our engine: HFLLM options beside batch 32 with the prefix cache.
OUR_ARMS: dict[str, dict] = {"ours": {}, "ours-nodraft": {"draft_tokens": 0}, "ours-bf16": {"dtype": "bfloat16"}}
LABELS = {"paper": "paper-style (batch 1, no KV reuse)", "ours": "continuous batching + KV reuse",
          "ours-nodraft": "  the same without drafts", "ours-bf16": "  the same in bf16",
          "transformers-cb": "transformers generate_batch"}


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
    ap.add_argument("--arms", default="ours,ours-nodraft,paper,transformers-cb",
                    help="comma-separated; 'paper' is the reference the others are compared with")
    args = ap.parse_args()
    arms = set(args.arms.split(","))
    if arms - set(LABELS):
        ap.error(f"--arms: unknown {', '.join(sorted(arms - set(LABELS)))} (known: {', '.join(LABELS)})")
    path = resolve(args.model) if args.model in NAMED else args.model
    examples = HotpotQA().examples("eval", limit=args.n)
    index = get_index()

    n = len(examples)
    res: dict[str, tuple[float, dict]] = {}
    skipped: dict[str, str] = {}
    for name, options in OUR_ARMS.items():
        if name in arms:
            llm = HFLLM(path, name=args.model, batch_size=32, prefix_cache=True, **options)
            res[name] = arm(name, llm, n, examples, index, args.out)
            del llm
    if "transformers-cb" in arms:
        llm = TransformersCBLLM(path, args.model)
        try:
            res["transformers-cb"] = arm("transformers-cb", llm, n, examples, index, args.out)
        except Exception as e:  # noqa: BLE001 - whatever generate_batch raises on this machine is the finding
            skipped["transformers-cb"] = f"{type(e).__name__}: {e}"
        del llm
    if "paper" in arms:
        res["paper"] = arm("paper", PaperLLM(path, args.model), 1, examples, index, args.out)

    print()
    print(f"questions: {n}  model: {args.model}  CPU: {cpu_name()} (fast bf16 matmuls: {bf16_matmuls_fast()})")
    for name, label in LABELS.items():
        if name in skipped:
            print(f"{label + ':':36s} skipped: {skipped[name]}")
        elif name in res:
            t, r = res[name]
            print(f"{label + ':':36s}{t:8.1f} s  {n / t * 60:6.2f} q/min  EM {r['summary'].main:.3f}")
    # Every arm against the paper loop, or against ours when the paper arm did not run.
    ref = "paper" if "paper" in res else "ours" if "ours" in res else None
    if ref is None:
        return
    t_ref, base = res[ref]
    for name, (t, r) in res.items():
        if name == ref:
            continue
        same = sum(base["answers"][e.id] == r["answers"][e.id] for e in examples)
        target = "   (targets >= 10x, >= 95%)" if (ref, name) == ("paper", "ours") else ""
        print(f"{name} vs {ref}: speed-up {t_ref / t:.2f}x, identical final answers {same}/{n} = {same / n:.1%}{target}")
        for e in examples:
            if base["answers"][e.id] != r["answers"][e.id]:
                print(f"  differs {e.id}: {ref}={base['answers'][e.id]!r} {name}={r['answers'][e.id]!r}")


if __name__ == "__main__":
    main()
