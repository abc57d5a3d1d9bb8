"""``budget train``: fit a baseline, or fine-tune the LLM predictor with the existing trainers.

Fitted predictors (``mean``, ``mode``, ``features``, ``features+env``, ``gbm``) are fitted on the dataset's ``train`` rows in a
second and saved as ``predictor.json``. The LLM methods (``sft``, ``grpo``, ``rloo``, ``dpo``,
``kto``) write their rows (``budget.rows``) under ``DATA/rows/FORMAT/``, load the method's recipe
(default: the packaged ``budget_METHOD_smollm2_lora``) with ``data.path`` set to those rows, and
call the method's trainer from ``reactlab.train`` unchanged (TensorBoard logs, ``loss.png``,
``training.json`` as any run); then ``predictor.json`` beside the adapter names the model, the
adapter, the bucket edges and the fallback (the training labels' mode) for unparsed answers.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from reactlab.budget.calls import CALL_KINDS
from reactlab.budget.labels import load_budget
from reactlab.budget.predictors import FITTED, LLMPredictor, MeanMode, fit_baseline, save_predictor
from reactlab.budget.rows import FORMAT_OF, write_rows

BASELINES = FITTED
LLM_METHODS = tuple(FORMAT_OF)
CALL_METHODS = tuple(f"call_{k}" for k in CALL_KINDS)


def default_recipe(method: str) -> str:
    return f"budget_{method}_smollm2_lora"


def train_budget(method: str, data: str | Path, config: Sequence[str] = (), out: str | None = None,
                 resume: bool = False) -> dict[str, Any]:
    """Train predictor ``method`` on the budget dataset ``data`` (module docstring); return what
    was written (``predictor``: the ``predictor.json`` path; ``training``: the trainer's result)."""
    from reactlab import config as configs
    from reactlab.train import recipes

    budget = load_budget(data)
    train_rows = budget.rows["train"]
    if method in CALL_METHODS:
        from reactlab.budget.calls import fit_call_predictor, read_calls, save_call_predictor

        if config or resume or out is None:
            raise ValueError(f"budget train {method} needs --out and takes no -c recipe or --resume")
        calls = read_calls(Path(data) / "calls" / "train.jsonl")
        p = fit_call_predictor(method.removeprefix("call_"), calls, budget.stats.get("call_edges", []))
        return {"predictor": str(save_call_predictor(p, out)), "calls": len(calls)}
    if method in BASELINES:
        if config or resume:
            raise ValueError(f"baseline {method!r} takes no -c recipe or --resume")
        if out is None:
            raise ValueError(f"budget train {method} needs --out (a predictor.json path or a directory)")
        return {"predictor": str(save_predictor(fit_baseline(method, train_rows, budget.edges), out))}
    if method not in LLM_METHODS:
        raise ValueError(f"unknown budget predictor method {method!r}; known: {', '.join(BASELINES + LLM_METHODS + CALL_METHODS)}")
    fmt = FORMAT_OF[method]
    rows_dir = Path(data) / "rows" / fmt
    counts = write_rows(budget, fmt, rows_dir)
    files, specs = configs.split_specs(list(config))
    cfg = configs.load_config(getattr(recipes, f"{method.upper()}Recipe"), files or [default_recipe(method)],
                              [*specs, f"data.path={rows_dir}", *([f"out={out}"] if out else [])])
    from reactlab.train.cli import TRAINERS

    module, function = TRAINERS[method].split(":")
    result = getattr(importlib.import_module(module), function)(cfg, resume=resume)
    fallback = MeanMode.fit(train_rows, "mode").overall
    if cfg.method == "full":
        predictor = LLMPredictor(cfg.out, budget.edges, fallback)
    else:
        predictor = LLMPredictor(cfg.model.name, budget.edges, fallback, adapter=cfg.out)
    return {"predictor": str(save_predictor(predictor, cfg.out)), "rows": counts, "training": asdict(result)}
