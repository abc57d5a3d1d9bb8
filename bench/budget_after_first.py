"""Re-predicting an episode's cost once its first observation is in: does what the first search
returned say how long the rest of the episode will be, where the question alone says little?

For every episode that is still running after its first step (greedy labels: one run per question),
the prompt of its second call (``budget.calls.episode_prompt``: the question, then step 1's thought,
action and observation) is read by ``budget.calls.call_features`` (the observation's kind: a page,
"Could not find", a result list; its length; the first action). Targets: the steps still to come
(``steps - 1``) and the tokens still to be generated (the episode's completion tokens after step 1,
raw and as quintile buckets of the training labels). Fitted on the training run(s), scored once on
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

from reactlab.budget.calls import NAMES, call_features, episode_prompt
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


def rows(trajs: list[Trajectory], at: int) -> tuple[list[list[float]], dict[str, list[float]]]:
    """Features of the prompt of call ``at`` and the targets still to come after step 1."""
    x, y = [], {"steps": [], "tokens": []}
    for t in trajs:
        prompt = episode_prompt(t, at) or ""
        f = call_features(prompt)
        x.append([f[n] for n in NAMES])
        y["steps"].append(float(len(t.steps) - 1))
        y["tokens"].append(float(sum(s.usage.completion_tokens or 0 for s in t.steps[1:])))
    return x, y


def fit_predict(kind: str, x: list[list[float]], y: list[float], xt: list[list[float]]) -> list[float]:
    if kind == "gbm":
        from reactlab.budget import gbm

        model = gbm.fit(x, y)
        return [gbm.predict(model, v) for v in xt]
    from sklearn.linear_model import Ridge
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x)
    ridge = Ridge(alpha=1.0).fit(scaler.transform(x), y)
    return [float(v) for v in ridge.predict(scaler.transform(xt))]


def bucket(v: float, edges: list[float]) -> int:
    return sum(v > e for e in edges)


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
    for at, reads in ((1, "question only (step 1's prompt)"), (2, "question + step 1 (step 2's prompt)")):
        x, y = rows(train, at)
        xt, yt = rows(test, at)
        edges = statistics.quantiles(y["tokens"], n=5)
        for kind in ("ridge", "gbm"):
            for target in ("steps", "tokens", "token buckets"):
                key = "tokens" if target == "token buckets" else target
                pred = fit_predict(kind, x, y[key], xt)
                gold = yt[key]
                if target == "token buckets":
                    pred, gold = [bucket(p, edges) for p in pred], [bucket(g, edges) for g in gold]
                elif target == "steps":
                    pred = [float(round(p)) for p in pred]
                tau = kendall_tau_b(pred, gold)
                lo, hi = bootstrap(pred, gold)["tau"]
                out[f"{target}|{at}|{kind}"] = {"tau": tau, "ci": [lo, hi], "n": len(gold)}
                lines.append(f"| {target} | {reads} | {kind} | {tau:.3f} [{lo:.2f}, {hi:.2f}] |")
    print("\n".join(lines))
    spread = statistics.pstdev(rows(test, 2)[1]["steps"])
    print(f"remaining steps on the test episodes: mean {statistics.fmean(rows(test, 2)[1]['steps']):.2f}, "
          f"sd {spread:.2f}; token bucket edges (train quintiles) {[round(e) for e in edges]}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
