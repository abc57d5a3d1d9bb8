"""``budget eval``: every predictor scored on one split of a budget dataset by the same code.

A predictor is named by a saved ``predictor.json`` (or its directory), or by a baseline name
(``mean``, ``mode``, ``features``, ``features+env``, ``gbm``), fitted on the dataset's ``train``
rows on the spot.
``evaluate_targets`` scores one target at a time (steps, episode tokens, per-call tokens) with
bootstrap intervals, on held-out questions only, beside the label set's noise ceiling.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reactlab.budget.labels import BudgetData, load_budget
from reactlab.budget.metrics import BOOT, score, score_ci
from reactlab.budget.predictors import FITTED, Predictor, fit_baseline, load_predictor

DEFAULT_PREDICTORS = ("mean", "mode", "features")


def resolve(spec: str, data: BudgetData) -> Predictor:
    """A predictor by baseline name (fitted on ``data``'s train rows) or saved path."""
    if spec in FITTED and not Path(spec).exists():
        return fit_baseline(spec, data.rows["train"], data.edges)
    return load_predictor(spec)


def evaluate(data_dir: str | Path, predictors: Sequence[str] = DEFAULT_PREDICTORS,
             split: str = "val") -> dict[str, dict[str, Any]]:
    """``{predictor: {"steps": score, "bucket": score, "unparsed": n}}`` on ``split``'s rows."""
    data = load_budget(data_dir)
    if split not in data.rows:
        raise ValueError(f"unknown split {split!r}; a budget dataset has {', '.join(data.rows)}")
    rows = data.rows[split]
    if not rows:
        raise ValueError(f"{data_dir}: split {split!r} has no rows to score")
    out: dict[str, dict[str, Any]] = {}
    for spec in predictors:
        preds = resolve(spec, data).predict(rows)
        with_bucket = [(p, r.bucket) for p, r in zip(preds, rows, strict=True) if r.bucket is not None]
        out[spec] = {"steps": score([p.steps for p in preds], [r.steps for r in rows]),
                     "bucket": score([p.bucket for p, _ in with_bucket], [b for _, b in with_bucket]),
                     "unparsed": sum(not p.parsed for p in preds)}
    return out


EPISODE_TARGETS = {"steps": "steps", "tokens": "bucket"}
"""Episode targets and the label each is scored on (episode tokens as their bucket)."""
CALL_PREDICTORS = ("mean", "mode", "head", "step", "ridge", "gbm")


def check_unseen(train: Sequence[Any], rows: Sequence[Any], split: str) -> None:
    """Refuse to score ``rows`` whose question some training row has (a leak, not a score)."""
    from reactlab.data.select import normalize_question

    seen = {normalize_question(r.question) for r in train}
    leaked = [r.question for r in rows if normalize_question(r.question) in seen]
    if leaked:
        raise ValueError(f"split {split!r}: {len(leaked)} rows ask a question a training row has "
                         f"(first: {leaked[0]!r}); score held-out questions only")


def _call_predictor(spec: str, train: Sequence[Any], edges: Sequence[int]) -> Any:
    from reactlab.budget.calls import CALL_KINDS, fit_call_predictor, load_call_predictor

    if spec in CALL_KINDS and not Path(spec).exists():
        return fit_call_predictor(spec, train, edges)
    return load_call_predictor(spec)


def evaluate_targets(data_dir: str | Path, targets: Sequence[str], predictors: Sequence[str] = FITTED,
                     call_predictors: Sequence[str] = CALL_PREDICTORS, split: str = "val",
                     n_boot: int = BOOT, call_head: str | None = None,
                     call_step: int | None = None) -> dict[str, dict[str, Any]]:
    """Per target (``steps``, ``tokens``, ``call_tokens``): every predictor's ``score_ci`` on
    ``split``'s questions, none of which a training row has (``check_unseen``), and the label
    set's noise ceiling from ``stats.json``. Calls are resampled by question (``groups``);
    ``call_head`` scores only the calls of one kind (``calls.call_head``; predictors still fit on
    every training call), so a mixed workload's score can be split into what ranks within a kind;
    ``call_step`` likewise scores only the calls of one step (what ranks beyond the position)."""
    from reactlab.budget.calls import HEADS, read_calls
    from reactlab.budget.calls import call_head as head_of
    from reactlab.budget.calls import call_step as step_of

    if call_head is not None and call_head not in HEADS:
        raise ValueError(f"unknown call head {call_head!r}; known: {', '.join(HEADS)}")

    data = load_budget(data_dir)
    if split not in data.rows:
        raise ValueError(f"unknown split {split!r}; a budget dataset has {', '.join(data.rows)}")
    ceiling = data.stats.get("noise_ceiling", {})
    out: dict[str, dict[str, Any]] = {}
    for target in targets:
        if target in EPISODE_TARGETS:
            label = EPISODE_TARGETS[target]
            rows = [r for r in data.rows[split] if getattr(r, label) is not None]
            if not rows:
                raise ValueError(f"{data_dir}: split {split!r} has no rows with a {target} label")
            if split != "train":
                check_unseen(data.rows["train"], rows, split)
            gold = [getattr(r, label) for r in rows]
            scores = {}
            for spec in predictors:
                preds = resolve(spec, data).predict(rows)
                scores[spec] = score_ci([getattr(p, label) for p in preds], gold, n_boot=n_boot)
            out[target] = {"predictors": scores, "ceiling": ceiling.get(label), "edges": data.edges,
                           "questions": len(rows)}
        elif target == "call_tokens":
            root = Path(data_dir) / "calls"
            train, calls = read_calls(root / "train.jsonl"), read_calls(root / f"{split}.jsonl")
            if call_head is not None:
                calls = [c for c in calls if head_of(c.prompt) == call_head]
            if call_step is not None:
                calls = [c for c in calls if step_of(c.prompt) == call_step]
            if not calls or not train:
                only = "".join([f" of head {call_head!r}" if call_head else "",
                                f" at step {call_step}" if call_step is not None else ""])
                raise ValueError(f"{root}: no calls in split 'train' or {split!r}"
                                 + (only or " (build with --target call_tokens)"))
            if split != "train":
                check_unseen(train, calls, split)
            edges = data.stats.get("call_edges", [])
            gold = [c.bucket for c in calls]
            scores = {}
            for spec in call_predictors:
                p = _call_predictor(spec, train, edges)
                scores[spec] = score_ci([p.predict_bucket(c.prompt) for c in calls], gold,
                                        groups=[c.question for c in calls], n_boot=n_boot)
            out[target] = {"predictors": scores, "ceiling": ceiling.get("call_bucket"), "edges": edges,
                           "questions": len({c.question for c in calls}), "calls": len(calls)}
        else:
            raise ValueError(f"unknown target {target!r}; known: steps, tokens, call_tokens")
    return out
