"""What CoT self-consistency costs: k samples as one ``n = k`` query vs k times CoT, side by side.

Three arms on the same questions and model, each a normal run (``runner.run_from_config``):

- ``cot``: one greedy chain of thought per question;
- ``cot_sc``: k chains per question as one query with ``GenParams.n = k`` (the prompt is encoded
  once, its KV shared by the k rows);
- ``cot x k (separate)``: the same k sampled chains asked as k separate queries per question (k
  episodes of ``cot_sc`` with ``sc_k = 1`` and the seeds ``seed + i``): what k independent calls cost
  through the same engine.

Prints wall times and the ratio ``cot_sc / cot`` against the target ``<= 0.3 x k``, and
``cot_sc / separate``. ``--batch-size``: questions in flight at once in every arm. With 1 (the
papers' loop, or one user asking), CoT decodes one row and CoT-SC k rows of one prompt: on a CPU a
step over k rows costs far less than k steps over one. With 32, CoT already decodes 32 rows per step
and CoT-SC can only add rows where a step is not yet bound by compute (a GPU; not 2 CPU cores).

    .venv/bin/python bench/cot_sc_cost.py --n 20 --k 21 [--batch-size 1] [--task hotpotqa] [--model smollm2]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from reactlab.agents.consistency import CoTSCAgent, example_seed
from reactlab.config import ModelRef, RunConfig
from reactlab.hardware import describe_cpu
from reactlab.runner import open_llm, run_from_config
from reactlab.tasks import make_task
from reactlab.wiki.index import get_index


def separate(llm, task_name: str, n: int, k: int, batch_size: int) -> float:
    """k sampled chains per question, each its own query (n = 1, seeds seed + i); ``batch_size``
    questions' queries are submitted together, the next group when they are all done."""
    agent = CoTSCAgent(make_task(task_name), sc_k=k)
    exs = make_task(task_name).examples("eval", limit=n)
    t0 = time.perf_counter()
    for a in range(0, len(exs), batch_size):
        queries = [agent.cot.cot_query(ex.question, replace(agent.params, n=1, seed=example_seed(ex.id) + i))
                   for ex in exs[a : a + batch_size] for i in range(k)]
        for key, q in enumerate(queries):
            llm.submit((a, key), q.prompt, q.params)
        done = 0
        while done < len(queries):
            done += len(llm.poll())
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--k", type=int, default=21)
    ap.add_argument("--task", default="hotpotqa")
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--batch-size", type=int, default=32, help="questions in flight at once (every arm)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="cot-sc-bench-"))
    llm = open_llm(ModelRef(name=args.model))
    times = {}
    with get_index() as index:
        for method in ("cot", "cot_sc"):
            cfg = RunConfig(out=str(tmp / method), task=args.task, limit=args.n, method=method, sc_k=args.k,
                            model=ModelRef(name=args.model), batch_size=args.batch_size)
            t0 = time.perf_counter()
            run_from_config(cfg, index=index, llms={"default": llm}, progress=False)
            times[method] = time.perf_counter() - t0
    times["separate"] = separate(llm, args.task, args.n, args.k, args.batch_size)
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"CPU: {describe_cpu()}; model {args.model}; task {args.task}; {args.n} questions; k = {args.k}; "
          f"{args.batch_size} question(s) in flight")
    print("| arm | wall time | vs cot |")
    print("|---|---:|---:|")
    for name, label in (("cot", "cot (greedy, 1 chain)"), ("cot_sc", f"cot_sc (n = {args.k}, one query)"),
                        ("separate", f"cot x {args.k} (separate queries)")):
        print(f"| {label} | {times[name]:.1f} s | {times[name] / times['cot']:.2f}x |")
    ratio = times["cot_sc"] / times["cot"]
    print(f"cot_sc / cot = {ratio:.2f} = {ratio / args.k:.3f} x k (target <= 0.3 x k: "
          f"{'met' if ratio <= 0.3 * args.k else 'NOT met'}); cot_sc / separate = "
          f"{times['cot_sc'] / times['separate']:.2f}")


if __name__ == "__main__":
    main()
