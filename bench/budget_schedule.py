"""A run in the task's order vs the same run with the predicted-longest episodes started first
(``RunConfig.order_by = budget:PREDICTOR``), side by side on one loaded model.

Both arms run the same agent, model and questions through ``run_from_config``; only the order in
which episodes start differs. Prints each arm's wall time (median over ``--repeats``, the arms
alternating), their ratio, the longest episode's start position in each, and the share of
identical final answers, which must be 100% under greedy decoding: ordering decides when an
episode starts, never what it does.

``--oracle RUN`` adds an arm ordered by the TRUE cost of each episode (its steps, then tokens, in
RUN: an earlier greedy run of the same configuration, e.g. this bench's own task-order arm), the most
any predictor's ordering could give; ``--no-predicted`` leaves the predictor's arm out.

``--token-budget`` adds a third arm (once, after the repeats): the task order with each episode's
token budget set from the predictor (``RunConfig.token_budget``, ``--slack`` x the upper edge of
its predicted token range). Budgets do change episodes, so this arm prints what they cost and
save: EM and tokens per question against the unbudgeted run, and the episodes the budget closed.

    .venv/bin/python bench/budget_schedule.py --predictor runs/budget/features [--model smollm2]
        [--adapter DIR] [--task hotpotqa --split eval --limit 40] [--batch-size 8] [--repeats 2]
        [--token-budget [--slack 1.5]]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--predictor", required=True, help="a predictor.json or its directory (reactlab budget train)")
    ap.add_argument("--model", default="smollm2", help="model spec (smollm2, hf:PATH, DIR, scripted:FILE, ...)")
    ap.add_argument("--adapter", default=None)
    ap.add_argument("--task", default="hotpotqa")
    ap.add_argument("--split", default="eval")
    ap.add_argument("--limit", type=int, default=40)
    ap.add_argument("--style", default="completion", choices=("chat", "completion"), help="as `reactlab run` (completion)")
    ap.add_argument("--max-steps", type=int, default=7)
    ap.add_argument("--batch-size", type=int, default=8, help="episodes live at once (the tail shows below the count)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--token-budget", action="store_true", help="also run the task order with predicted token budgets")
    ap.add_argument("--slack", type=float, default=1.5, help="token budget = slack x the predicted range's upper edge")
    ap.add_argument("--oracle", type=Path, default=None, help="a run of the same configuration: order by its true costs")
    ap.add_argument("--no-predicted", action="store_true", help="leave out the predicted-longest-first arm")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    from reactlab.budget.schedule import for_run
    from reactlab.config import ModelRef, RunConfig
    from reactlab.hardware import describe_cpu
    from reactlab.runner import Schedule, open_llm, run_from_config

    out = args.out or Path(tempfile.mkdtemp(prefix="budget-schedule-"))
    ref = ModelRef(name=args.model, adapter=args.adapter)
    llm = open_llm(ref)
    print(f"CPU: {describe_cpu()}; {args.task} {args.split} limit {args.limit}; model {ref.label()}; "
          f"batch {args.batch_size}; predictor {args.predictor}")
    walls: dict[str, list[float]] = {}
    answers: dict[str, dict[str, str]] = {}
    steps: dict[str, list[int]] = {}
    summaries: dict[str, Any] = {}
    spec = f"budget:{args.predictor}"
    # (name, RunConfig options, the Schedule when not the one for_run makes from the options)
    orders: list[tuple[str, dict[str, Any], Schedule | None]] = [("task order", {}, None)]
    if not args.no_predicted:
        orders.append(("longest first", {"order_by": spec}, None))
    if args.oracle:
        cost = {t["id"]: (len(t["steps"]), t["usage"]["completion_tokens"]) for t in
                (json.loads(x) for x in (args.oracle / "trajectories.jsonl").read_text().splitlines())}

        def oracle(examples: list[Any], **_: Any) -> list[Any]:
            if missing := [e.id for e in examples if e.id not in cost]:
                raise SystemExit(f"--oracle {args.oracle}: {len(missing)} questions not in that run (first: {missing[0]})")
            return sorted(examples, key=lambda e: tuple(-c for c in cost[e.id]))

        # the runner applies an ordering only when order_by is set
        orders.append(("oracle first", {"order_by": f"oracle:{args.oracle}"}, Schedule(order=oracle)))
    arms = [(rep, name, opts, schedule) for rep in range(args.repeats) for name, opts, schedule in orders]
    if args.token_budget:
        arms.append((0, "token budget", {"token_budget": spec, "token_budget_slack": args.slack}, None))
    for rep, name, opts, schedule in arms:
        d = out / f"{name.replace(' ', '-')}-{rep}"
        shutil.rmtree(d, ignore_errors=True)
        cfg = RunConfig(out=str(d), task=args.task, split=args.split, limit=args.limit, style=args.style,
                        max_steps=args.max_steps, batch_size=args.batch_size, model=ref, **opts)
        if hasattr(llm, "reset_cache"):
            llm.reset_cache()  # no arm starts with the other's kept KV
        t0 = time.perf_counter()
        summaries[name] = run_from_config(cfg, llms={"default": llm}, progress=False, schedule=schedule or for_run(cfg))
        walls.setdefault(name, []).append(time.perf_counter() - t0)
        trajs = [json.loads(x) for x in (d / "trajectories.jsonl").read_text().splitlines()]
        answers[name] = {t["id"]: t["answer"] for t in trajs}
        steps[name] = [len(t["steps"]) for t in trajs]  # in the order episodes finished
    base = statistics.median(walls["task order"])
    ids = answers["task order"]
    print(f"{'arm':<14} {'wall s':>8}  steps (finish order)")
    for name, _, _ in orders:
        print(f"{name:<14} {statistics.median(walls[name]):8.1f}  {steps[name]}")
    for name, _, _ in orders[1:]:
        same = sum(answers[name].get(i) == a for i, a in ids.items())
        print(f"wall ratio (task order / {name}): {base / statistics.median(walls[name]):.2f}x; identical final "
              f"answers: {same}/{len(ids)} = {same / max(1, len(ids)):.1%}   (must be 100%)")
    if args.token_budget:
        closed = sum(1 for x in (out / "token-budget-0" / "trajectories.jsonl").read_text().splitlines()
                     if json.loads(x)["meta"].get("stopped_by") == "token_budget")
        same_b = sum(answers["token budget"].get(i) == a for i, a in ids.items())
        print(f"{'arm':<14} {'wall s':>8} {'EM':>14} {'tokens/q':>9}")  # tokens: prompt + completion
        for name in ("task order", "token budget"):
            s = summaries[name]
            print(f"{name:<14} {walls[name][0]:8.1f} {s.metrics['em']:7.3f} ± {s.stderr['em']:.3f} {s.tokens_per_question:9.1f}")
        print(f"token budget (slack {args.slack}): {closed} episodes closed by it; "
              f"{same_b}/{len(ids)} answers identical to the unbudgeted run")


if __name__ == "__main__":
    main()
