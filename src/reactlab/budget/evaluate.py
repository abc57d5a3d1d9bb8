"""``budget eval``: every predictor scored on one split of a budget dataset by the same code.

A predictor is named by a saved ``predictor.json`` (or its directory), or by a baseline name
(``mean``, ``mode``, ``features``, ``features+env``, ``gbm``), fitted on the dataset's ``train`` rows on the spot.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reactlab.budget.labels import BudgetData, load_budget
from reactlab.budget.metrics import score
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
