"""The runner's use of a budget predictor: start the episodes predicted to be longest first, and
give each episode a token budget.

With ``batch_size`` episodes live at once, a long episode started last runs alone at the end (the
tail); started first, it overlaps the short ones. Ordering changes only when an episode starts,
never what it does: greedy answers are the same (``bench/budget_schedule.py`` measures both).

A token budget does change episodes (one that would run past it is closed early): each gets
``slack`` x the upper edge of its predicted token bucket (``example.meta["token_budget"]``, which
the react agent enforces); a question predicted in the top bucket, which has no upper edge, none.

``for_run`` turns a ``RunConfig``'s ``order_by`` / ``token_budget`` into the runner's ``Schedule``
(the runner never imports this package).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from reactlab.budget.labels import Question
from reactlab.budget.predictors import Predictor, load_predictor
from reactlab.runner import Schedule
from reactlab.types import Example

if TYPE_CHECKING:
    from reactlab.config import RunConfig


def longest_first(examples: Sequence[Example], predictor: Predictor, *, task: str, agent: str, method: str,
                  model: str) -> list[Example]:
    """``examples`` sorted by predicted (steps, token bucket), largest first; ties keep their order."""
    preds = predictor.predict([Question(e.question, task=task, agent=agent, method=method, model=model, type=e.type)
                               for e in examples])
    order = sorted(range(len(examples)), key=lambda i: (-preds[i].steps, -preds[i].bucket, i))
    return [examples[i] for i in order]


def predictor_of(spec: str, key: str) -> Predictor:
    """The predictor of a ``budget:PATH`` option (``key`` names the option in errors)."""
    kind, sep, path = spec.partition(":")
    if kind != "budget" or not sep or not path:
        raise ValueError(f"{key} {spec!r}: expected budget:PATH (a predictor.json or its directory)")
    return load_predictor(path)


def _budgets(examples: Sequence[Example], *, predictor: Predictor, slack: float, task: str, agent: str, method: str,
             model: str) -> list[Example]:
    """Each example with its token budget in ``meta`` (module docstring)."""
    from reactlab.agents.react import TOKEN_BUDGET

    preds = predictor.predict([Question(e.question, task=task, agent=agent, method=method, model=model, type=e.type)
                               for e in examples])
    out = []
    for e, p in zip(examples, preds, strict=True):
        if p.bucket < len(predictor.edges):
            e = replace(e, meta={**e.meta, TOKEN_BUDGET: math.ceil(slack * predictor.edges[p.bucket])})
        out.append(e)
    return out


def for_run(cfg: RunConfig) -> Schedule | None:
    """The ``Schedule`` of ``cfg.order_by`` / ``cfg.token_budget`` (None when it sets neither); a
    bad spec or predictor raises now. ``identity``: the predictor's content hash and the slack."""
    if not cfg.order_by and not cfg.token_budget:
        return None
    from reactlab.io import files_sha256

    order = budgets = None
    identity = {}
    if cfg.order_by:
        order = partial(longest_first, predictor=predictor_of(cfg.order_by, "order_by"))
    if cfg.token_budget:
        predictor = predictor_of(cfg.token_budget, "token_budget")
        budgets = partial(_budgets, predictor=predictor, slack=cfg.token_budget_slack)
        path = Path(cfg.token_budget.partition(":")[2])
        identity = {"predictor_sha256": files_sha256([path / "predictor.json" if path.is_dir() else path]),
                    "slack": cfg.token_budget_slack}
    return Schedule(order=order, budgets=budgets, identity=identity)
