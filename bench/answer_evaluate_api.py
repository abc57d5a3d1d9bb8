"""The Answer -> Evaluate pipeline's arms run twice on the same questions: in process (the local
engine) and through the OpenAI-compatible API of ``reactlab serve`` on the same loaded model (HTTP,
the chat endpoint, the server's batching), so the API path is exercised end to end. Prints each
arm's accuracy, the Answer agent's accuracy (``candidate_accuracy``), the fallback rate, wall time,
and the share of identical final answers between the two paths (greedy decoding on both).

    .venv/bin/python bench/answer_evaluate_api.py [--task mmlu] [--model smollm2] [--limit 50] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from reactlab.hardware import describe_cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="mmlu")
    ap.add_argument("--split", default="eval")
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--limit", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0, help="shuffle seed before --limit")
    ap.add_argument("--methods", default="direct,answer_evaluate")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    from reactlab.config import RunConfig
    from reactlab.llm.hf import HFLLM
    from reactlab.llm.openai_compat import OpenAILLM
    from reactlab.models import parse_model
    from reactlab.runner import run_from_config
    from reactlab.serve import serve

    out = args.out or Path(tempfile.mkdtemp(prefix="ae-api-"))
    llm = HFLLM(parse_model(args.model).path(), name=args.model)
    print(f"CPU: {describe_cpu()}; {args.task} {args.split} limit {args.limit} seed {args.seed}; model {args.model}")
    print("| method | path | n | accuracy | Answer alone | fallback | wall s | same final answer as in process |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    with serve(llm, model_name=args.model) as server:
        api = OpenAILLM(args.model, base_url=f"{server.url}/v1", api_key="none", concurrency=16)
        for method in args.methods.split(","):
            answers = {}
            for path, model, llms in (("in process", args.model, llm), ("API", f"openai:{args.model}", api)):
                cfg = RunConfig(out=str(out / path.replace(" ", "-") / method), task=args.task, split=args.split,
                                limit=args.limit, seed=args.seed, agent="pipeline", method=method, model=model)
                t0 = time.perf_counter()
                s = run_from_config(cfg, llms={"default": llms}, progress=False)
                wall = time.perf_counter() - t0
                rows = [json.loads(x) for x in (Path(cfg.out) / "trajectories.jsonl").read_text().splitlines()]
                answers[path] = {r["id"]: r["answer"] for r in rows}
                same = (sum(answers[path][k] == answers["in process"].get(k) for k in answers[path])
                        / len(answers[path])) if path == "API" else 1.0
                m, e = s.metrics, s.stderr
                print(f"| {method} | {path} | {s.n} | {m['accuracy']:.3f} ± {e['accuracy']:.3f} | "
                      f"{m.get('candidate_accuracy', float('nan')):.3f} | {m.get('fallback', 0):.3f} | {wall:.0f} | "
                      f"{same:.3f} |", flush=True)
        api.close()
    print(f"runs: {out}")


if __name__ == "__main__":
    main()
