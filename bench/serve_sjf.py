"""Server scheduling: the same bounded mixed load sent to ``reactlab serve`` twice, admitting waiting
requests first come first served, then shortest predicted first (``sjf:max_tokens``). Mean and p95
latency, throughput (completion tokens/s, requests/s), their ratios SJF/FCFS, and the share of
requests answered identically (greedy) under both.

The load is open-loop: ``--bursts`` bursts, each of ``--longs`` long and ``--shorts`` short requests
in a seeded shuffled order (sent ``--stagger-ms`` apart, so the server queues them in that order),
one burst every ``--gap-steps`` decoding steps' time (a step's time is measured in a warm-up). The
model's batch holds ``--slots`` rows, so each burst queues more requests than it has slots. Drafting
is off by default (``--draft-tokens``), as in ``serve_latency.py``: a request's steps are then its tokens.

With ``--run DIR --predictor PATH`` the load is an agent's own calls instead: the model calls of a
zero-shot chat-layout run (each step's messages, ``budget.calls.chat_turns``; served with the run's
adapter, ``--adapter``), ``--per-burst`` drawn per burst with one ``max_tokens`` for all (the agent's
128), so ``sjf:max_tokens`` has nothing to order: FCFS against ``sjf:PATH`` (a per-call token
predictor, ``budget train call_gbm``) and against SJF by the tokens each call generated in the run
(the order a perfect predictor would give; a bound, not a scheduler).

With ``--learn`` the load is chat requests of several kinds whose lengths differ (short answers,
plain questions, long explanations: ``TEMPLATES`` over HotpotQA questions), all with one
``max_tokens``, and the predictor is learned from the server's own traffic: first
``--learn-requests`` requests of train-pool questions are served FCFS with ``record=`` (as
``reactlab serve --record DIR``), ``call_gbm+words`` is fitted on that recording
(``budget.calls.record_rows``), then the load of evaluation questions is served FCFS, ``sjf:`` the
learned predictor, and SJF by each request's tokens under FCFS (the bound). Also printed: the
predictor's Kendall tau-b against those tokens.

    .venv/bin/python bench/serve_sjf.py [--model smollm2] [--slots 4] [--bursts 4] [--threads 1]
    .venv/bin/python bench/serve_sjf.py --learn [--learn-requests 100] [--per-burst 20] [--gap-steps 150]
    .venv/bin/python bench/serve_sjf.py --run runs/sft-eval491 --adapter runs/demo/adapter \
        --predictor out/call-gbm-sft [--per-burst 20] [--gap-steps 150]
"""

from __future__ import annotations

import argparse
import random
import statistics
import threading
import time
from typing import Any

import httpx

from reactlab.hardware import describe_cpu
from reactlab.llm.hf import HFLLM
from reactlab.models import parse_model
from reactlab.serve import serve
from reactlab.serve.batcher import Schedule
from reactlab.types import GenParams, prompt_text

SUBJECTS = ["a dragon", "a lighthouse", "a river", "a clockmaker", "a desert", "a violin", "a comet", "a library"]
QUESTIONS = ["What is the capital of France?", "Who wrote Hamlet?", "What is 2 + 2?", "What colour is the sky?",
             "Which planet is the largest?", "What is water made of?", "Who painted the Mona Lisa?",
             "How many legs has a spider?"]


TEMPLATES = {"short": ("Answer in one or two words: {q}", "Reply with just the name: {q}",
                       "Give only the answer, no explanation: {q}"),
             "plain": ("{q}",),
             "long": ("Explain in detail, step by step: {q}", "Write a short essay about this question: {q}",
                      "Describe the background of this question at length: {q}")}
"""``--learn``'s kinds of request: the server sees only the text, never the kind."""

Request = tuple[int, Any, int, str]
"""(burst, prompt: a text or chat messages, max_tokens, kind) in sending order."""


def arrivals(args: argparse.Namespace) -> list[Request]:
    """The seeded synthetic load: long stories and short answers."""
    rng = random.Random(args.seed)
    out: list[Request] = []
    for b in range(args.bursts):
        kinds = [True] * args.longs + [False] * args.shorts
        rng.shuffle(kinds)
        for i, long in enumerate(kinds):
            if long:
                prompt = f"Write a long story about {rng.choice(SUBJECTS)} (burst {b}, request {i}).\nStory:"
            else:
                prompt = f"Question {b}.{i}: {rng.choice(QUESTIONS)}\nAnswer:"
            out.append((b, prompt, args.long_tokens if long else args.short_tokens, "long" if long else "short"))
    return out


def agent_calls(run_dir: str, bursts: int, per_burst: int, max_tokens: int, seed: int) -> tuple[list[Request], dict]:
    """The seeded load of an agent's calls: ``per_burst`` steps of ``run_dir``'s zero-shot chat
    episodes per burst (drawn without replacement), each as the messages the agent sent, and the
    tokens each generated in the run by its prompt's text (for the perfect-predictor bound)."""
    from reactlab.budget.calls import chat_turns, zero_shot_chat
    from reactlab.data.sources import load_source

    steps = [(x.traj, s) for x in load_source(run_dir) if zero_shot_chat(x.traj)
             for s in x.traj.steps if s.usage.completion_tokens]
    if len(steps) < bursts * per_burst:
        raise SystemExit(f"{run_dir}: {len(steps)} zero-shot chat steps, fewer than {bursts} x {per_burst}")
    picked = random.Random(seed).sample(steps, bursts * per_burst)
    load: list[Request] = [(n // per_burst, chat_turns(t, s.i), max_tokens, "call") for n, (t, s) in enumerate(picked)]
    return load, {prompt_text(x[1]): s.usage.completion_tokens for x, (_, s) in zip(load, picked, strict=True)}


def requests_load(split: str, bursts: int, per_burst: int, max_tokens: int, seed: int) -> list[Request]:
    """``bursts`` x ``per_burst`` chat requests over HotpotQA ``split`` questions, each with a kind
    and phrasing of ``TEMPLATES`` drawn at random (seeded)."""
    from reactlab.tasks import make_task

    rng = random.Random(seed)
    questions = [e.question for e in make_task("hotpotqa").examples(split)]
    kinds = sorted(TEMPLATES)
    out: list[Request] = []
    for n, q in enumerate(rng.sample(questions, bursts * per_burst)):
        kind = rng.choice(kinds)
        text = rng.choice(TEMPLATES[kind]).format(q=q)
        out.append((n // per_burst, [{"role": "user", "content": text}], max_tokens, kind))
    return out


def learned_predictor(llm: Any, args: argparse.Namespace, gap_s: float, record: str) -> Any:
    """Serve ``--learn-requests`` train-pool requests FCFS, recorded into ``record``; a per-call GBM
    fitted on the recording."""
    from reactlab.budget.calls import fit_call_predictor, record_rows
    from reactlab.budget.labels import quantile_edges

    per = args.per_burst
    load = requests_load("train", -(-args.learn_requests // per), per, args.call_tokens, args.seed + 1)
    llm.reset_cache()
    with serve(llm, max_batch=args.slots, record=record) as server:
        r = run_load(server.url, load, gap_s, args.stagger_ms / 1000, [])
    rows, _ = record_rows(record, lambda _: "train")
    tokens = [row.tokens for row in rows]
    print(f"learned from {len(rows)} recorded requests of train-pool questions ({r['wall']:.0f} s; their tokens: "
          f"mean {statistics.mean(tokens):.1f}, {min(tokens)}-{max(tokens)}): call_gbm+words")
    return fit_call_predictor("gbm+words", rows, quantile_edges(tokens, 5))


def run_load(base: str, load: list[Request], gap_s: float, stagger_s: float, stop: list[str]) -> dict:
    """Send ``load`` on its schedule; each request's latency, text and completion tokens."""
    results: list[tuple[float, str, int] | None] = [None] * len(load)
    ends = [0.0] * len(load)

    def one(i: int, prompt: Any, max_tokens: int) -> None:
        t0 = time.perf_counter()
        chat = not isinstance(prompt, str)
        body = {"messages" if chat else "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "stop": stop}
        r = httpx.post(base + ("/v1/chat/completions" if chat else "/v1/completions"), json=body, timeout=3600)
        r.raise_for_status()
        out = r.json()
        ends[i] = time.perf_counter()
        choice = out["choices"][0]
        results[i] = (ends[i] - t0, choice["message"]["content"] if chat else choice["text"],
                      out["usage"]["completion_tokens"])

    start = time.perf_counter()
    threads = []
    for i, (burst, prompt, max_tokens, _) in enumerate(load):
        at = start + burst * gap_s + (i - next(j for j, x in enumerate(load) if x[0] == burst)) * stagger_s
        time.sleep(max(0.0, at - time.perf_counter()))
        threads.append(threading.Thread(target=one, args=(i, prompt, max_tokens)))
        threads[-1].start()
    for t in threads:
        t.join()
    done = [r for r in results if r is not None]
    assert len(done) == len(load), "a request failed"
    wall = max(ends) - start
    lat = sorted(r[0] for r in done)
    kinds = sorted({x[3] for x in load})
    by_kind = {k: statistics.mean(r[0] for r, x in zip(done, load, strict=True) if x[3] == k) for k in kinds}
    return {"mean": statistics.mean(lat), "p95": lat[round(0.95 * (len(lat) - 1))], "by_kind": by_kind,
            "tok_s": sum(r[2] for r in done) / wall, "req_s": len(done) / wall, "wall": wall,
            "texts": [r[1] for r in done], "tokens": sum(r[2] for r in done), "counts": [r[2] for r in done]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--adapter", default=None, help="a LoRA adapter the server applies (the run's own)")
    ap.add_argument("--slots", type=int, default=4, help="rows the model decodes together (the batch)")
    ap.add_argument("--bursts", type=int, default=4)
    ap.add_argument("--longs", type=int, default=4, help="long requests per burst")
    ap.add_argument("--shorts", type=int, default=16, help="short requests per burst")
    ap.add_argument("--long-tokens", type=int, default=48)
    ap.add_argument("--short-tokens", type=int, default=4)
    ap.add_argument("--run", default=None, help="an agent's zero-shot chat run: its calls are the load")
    ap.add_argument("--predictor", default=None, help="with --run: a per-call token predictor (sjf:PATH)")
    ap.add_argument("--learn", action="store_true", help="kinds of chat request; the predictor learned from a recording")
    ap.add_argument("--learn-requests", type=int, default=100, help="with --learn: recorded requests to learn from")
    ap.add_argument("--per-burst", type=int, default=20, help="with --run / --learn: requests per burst")
    ap.add_argument("--call-tokens", type=int, default=128, help="with --run / --learn: every request's max_tokens")
    ap.add_argument("--gap-steps", type=float, default=75, help="decoding steps' time between bursts")
    ap.add_argument("--draft-tokens", type=int, default=0, help="the engine's prompt-lookup drafts (0: off)")
    ap.add_argument("--stagger-ms", type=float, default=5, help="between the requests of a burst")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if bool(args.run) != bool(args.predictor):
        ap.error("--run and --predictor go together")
    if args.learn and args.run:
        ap.error("--learn makes its own load: not with --run")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    llm = HFLLM(parse_model(args.model).path(), adapter=args.adapter, name=args.model, batch_size=args.slots,
                draft_tokens=args.draft_tokens)
    warm = [f"Write a long story about a garden number {i}.\nStory:" for i in range(args.slots)]
    llm.generate(warm[:1], GenParams(max_new_tokens=8))
    steps, t0 = llm.engine.steps, time.perf_counter()
    llm.generate(warm, GenParams(max_new_tokens=16))
    step_s = (time.perf_counter() - t0) / (llm.engine.steps - steps)
    gap_s = args.gap_steps * step_s
    print(f"{describe_cpu()}; torch threads {torch.get_num_threads()}")
    schedules: dict[str, Schedule | None]
    if args.learn:
        import tempfile

        with tempfile.TemporaryDirectory() as record:
            predictor = learned_predictor(llm, args, gap_s, record)
        load, stop = requests_load("eval", args.bursts, args.per_burst, args.call_tokens, args.seed), []
        schedules = {"fcfs": Schedule(),
                     "sjf:learned": Schedule(lambda p, _: predictor.predict_tokens(prompt_text(p)))}
        print(f"model {args.model}, greedy, batch of {args.slots} rows; {args.bursts} bursts of {args.per_burst} "
              f"requests of evaluation questions (seed {args.seed}; kinds {', '.join(sorted(TEMPLATES))}; max_tokens "
              f"{args.call_tokens}), one burst every {args.gap_steps:g} steps = {gap_s:.1f} s (a warm-up step of "
              f"{args.slots} rows: {step_s * 1000:.0f} ms); drafts {args.draft_tokens}")
    elif args.run:
        from reactlab.budget.calls import load_call_predictor

        load, generated = agent_calls(args.run, args.bursts, args.per_burst, args.call_tokens, args.seed)
        predictor = load_call_predictor(args.predictor)
        schedules = {"fcfs": Schedule(),
                     f"sjf:{args.predictor}": Schedule(lambda p, _: predictor.predict_tokens(prompt_text(p))),
                     "sjf:run's own tokens (bound)": Schedule(lambda p, _: generated[prompt_text(p)])}
        stop = ["\nObservation"]  # the chat agent's stop
        print(f"model {args.model}{' + ' + args.adapter if args.adapter else ''}, greedy, batch of {args.slots} rows; "
              f"{args.bursts} bursts of {args.per_burst} calls of {args.run} (seed {args.seed}; max_tokens "
              f"{args.call_tokens}; their run's tokens: mean {statistics.mean(generated.values()):.1f}, "
              f"{min(generated.values())}-{max(generated.values())}), one burst every {args.gap_steps:g} steps = "
              f"{gap_s:.1f} s (a warm-up step of {args.slots} rows: {step_s * 1000:.0f} ms); drafts {args.draft_tokens}")
    else:
        load, stop = arrivals(args), []
        schedules = {"fcfs": Schedule(), "sjf:max_tokens": Schedule(lambda prompt, params: params.max_new_tokens)}
        print(f"model {args.model}, greedy, batch of {args.slots} rows; {args.bursts} bursts of {args.longs} long "
              f"(max_tokens {args.long_tokens}) + {args.shorts} short (max_tokens {args.short_tokens}) requests in a "
              f"seeded order (seed {args.seed}), one burst every {args.gap_steps:g} steps = {gap_s:.1f} s "
              f"(a warm-up step of {args.slots} rows: {step_s * 1000:.0f} ms); drafts {args.draft_tokens}")
    runs: dict[str, dict] = {}

    def bound() -> Schedule:  # SJF by each request's tokens under FCFS (greedy: the same under any order)
        tokens = {prompt_text(x[1]): n for x, n in zip(load, runs["fcfs"]["counts"], strict=True)}
        return Schedule(lambda p, _: tokens[prompt_text(p)])

    if args.learn:
        schedules["sjf:tokens under FCFS (bound)"] = None  # made once FCFS has run
    for label, schedule in schedules.items():
        schedule = schedule or bound()
        llm.reset_cache()  # no run reuses the other's prompt KV
        steps = llm.engine.steps
        with serve(llm, max_batch=args.slots, schedule=schedule) as server:
            runs[label] = r = run_load(server.url, load, gap_s, args.stagger_ms / 1000, stop)
        kinds = "" if args.run else "; mean latency by kind: " + ", ".join(
            f"{k} {v:.2f} s" for k, v in r["by_kind"].items())
        print(f"{label:15s} mean {r['mean']:7.2f} s   p95 {r['p95']:7.2f} s   {r['tok_s']:6.2f} completion tok/s   "
              f"{r['req_s']:5.3f} req/s   ({r['tokens']} tokens in {r['wall']:.1f} s, "
              f"{llm.engine.steps - steps} steps{kinds})")
    f = runs["fcfs"]
    if args.learn:
        from scipy.stats import kendalltau

        pred = [predictor.predict_tokens(prompt_text(x[1])) for x in load]
        tau = kendalltau(pred, f["counts"], variant="b").statistic
        by_kind = {k: statistics.mean(n for x, n in zip(load, f["counts"], strict=True) if x[3] == k)
                   for k in sorted({x[3] for x in load})}
        print(f"the learned predictor on this load: Kendall tau-b {tau:.3f} against the tokens under FCFS; "
              "their mean by kind: " + ", ".join(f"{k} {v:.1f}" for k, v in by_kind.items()))
    for label, s in runs.items():
        if label == "fcfs":
            continue
        same = sum(a == b for a, b in zip(f["texts"], s["texts"], strict=True)) / len(load)
        print(f"{label} / FCFS: mean latency {s['mean'] / f['mean']:.2f}x   p95 {s['p95'] / f['p95']:.2f}x   "
              f"tok/s {s['tok_s'] / f['tok_s']:.3f}x   req/s {s['req_s'] / f['req_s']:.3f}x   "
              f"identical outputs {same:.0%} of {len(load)} requests")


if __name__ == "__main__":
    main()
