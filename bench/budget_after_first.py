"""Re-predicting an episode's cost once its first observation is in: does what the first search
returned say how long the rest of the episode will be, where the question alone says little?

For every episode that is still running after its first step (greedy labels: one run per question),
the prompt of its second call (``budget.calls.episode_prompt``: the question, then step 1's thought,
action and observation) is read by ``budget.calls.call_features`` (the observation's kind: a page,
"Could not find", a result list; its length; the first action). Targets: the steps still to come
(``steps - 1``) and the tokens still to be generated (the episode's completion tokens after step 1,
raw and as quintile buckets of the training labels, ``labels.quantile_edges``). The per-call predictor's
ridge and GBM (``calls.fit_call_predictor``) are fitted on the training run(s), scored once on
the test run(s) with Kendall tau-b and its 95% bootstrap interval (``budget.metrics``), beside the
same regressors reading the step-1 prompt (the question alone: what a prediction before the episode
starts can know) on the same episodes. A constant ranks nothing (tau undefined).

    .venv/bin/python bench/budget_after_first.py --train runs/budget-react-train --test runs/eval491
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from reactlab.budget.calls import CallRow, episode_prompt, fit_call_predictor
from reactlab.budget.labels import bucket_of, quantile_edges
from reactlab.budget.metrics import bootstrap, kendall_tau_b
from reactlab.hardware import describe_cpu
from reactlab.types import Trajectory


def episodes(runs: list[Path]) -> list[Trajectory]:
    """Every finished episode of ``runs`` with at least two steps (one per question id: the first seen)."""
    seen: dict[str, Trajectory] = {}
    for run in runs:
        for line in (run / "trajectories.jsonl").read_text(encoding="utf-8").splitlines():
            t = Trajectory.from_dict(json.loads(line))
            if t.status not in ("error", "unrun") and len(t.steps) >= 2 and t.id not in seen:
                seen[t.id] = t
    return list(seen.values())


def rows(trajs: list[Trajectory], at: int, target: str) -> list[CallRow]:
    """The prompt of call ``at`` of each episode, labelled with what is still to come after step 1:
    ``steps`` (``steps - 1``) or ``tokens`` (completion tokens after step 1)."""
    out = []
    for t in trajs:
        left = len(t.steps) - 1 if target == "steps" else sum(s.usage.completion_tokens for s in t.steps[1:])
        out.append(CallRow(prompt=episode_prompt(t, at) or "", tokens=left, question=t.question, id=t.id))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", type=Path, action="append", required=True, help="a run directory (greedy)")
    ap.add_argument("--test", type=Path, action="append", required=True, help="a run directory of held-out questions")
    args = ap.parse_args()

    train, test = episodes(args.train), episodes(args.test)
    overlap = {t.question for t in train} & {t.question for t in test}
    train = [t for t in train if t.question not in overlap]  # a test question never trains
    print(f"CPU: {describe_cpu()}")
    print(f"{len(train)} training episodes, {len(test)} test episodes still running after step 1 "
          f"({len(overlap)} questions in both dropped from training)")
    out: dict[str, Any] = {}
    lines = ["| target | reads | predictor | tau [95% CI] |", "|---|---|---|---:|"]
    edges = quantile_edges([r.tokens for r in rows(train, 2, "tokens")])
    for at, reads in ((1, "question only (step 1's prompt)"), (2, "question + step 1 (step 2's prompt)")):
        for kind in ("ridge", "gbm"):
            for target in ("steps", "tokens", "token buckets"):
                key = "tokens" if target == "token buckets" else target
                model = fit_call_predictor(kind, rows(train, at, key), edges)
                test_rows = rows(test, at, key)
                pred = [model.predict_tokens(r.prompt) for r in test_rows]
                gold: list[float] = [r.tokens for r in test_rows]
                if target == "token buckets":
                    pred, gold = [bucket_of(round(p), edges) for p in pred], [bucket_of(int(g), edges) for g in gold]
                elif target == "steps":
                    pred = [float(round(p)) for p in pred]
                tau = kendall_tau_b(pred, gold)
                lo, hi = bootstrap(pred, gold)["tau"]
                out[f"{target}|{at}|{kind}"] = {"tau": tau, "ci": [lo, hi], "n": len(gold)}
                lines.append(f"| {target} | {reads} | {kind} | {tau:.3f} [{lo:.2f}, {hi:.2f}] |")
    print("\n".join(lines))
    left = [r.tokens for r in rows(test, 2, "steps")]
    print(f"remaining steps on the test episodes: mean {statistics.fmean(left):.2f}, sd {statistics.pstdev(left):.2f}; "
          f"token bucket edges (train quintiles, labels.quantile_edges) {edges}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
