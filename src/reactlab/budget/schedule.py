"""The runner's use of a budget predictor: start the episodes predicted to be longest first, and
give each episode a token budget.

With ``batch_size`` episodes live at once, a long episode started last runs alone at the end (the
tail); started first, it overlaps the short ones. Ordering changes only when an episode starts,
never what it does: greedy answers are the same (``bench/budget_schedule.py`` measures both).

A token budget does change episodes (one that would run past it is closed early): each gets
``slack`` x the upper edge of its predicted token bucket (``example.meta["token_budget"]``, which
the react agent enforces); a question predicted in the top bucket, which has no upper edge, none.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

from reactlab.budget.labels import Question
from reactlab.budget.predictors import Predictor, load_predictor
from reactlab.types import Example


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


def order_examples(examples: Sequence[Example], spec: str, *, task: str, agent: str, method: str,
                   model: str) -> list[Example]:
    """``RunConfig.order_by``: ``budget:PATH`` (a saved predictor) orders longest first."""
    return longest_first(examples, predictor_of(spec, "order_by"), task=task, agent=agent, method=method, model=model)


def with_token_budgets(examples: Sequence[Example], spec: str, slack: float, *, task: str, agent: str, method: str,
                       model: str) -> list[Example]:
    """``RunConfig.token_budget``: each example with its budget in ``meta`` (module docstring)."""
    from reactlab.agents.react import TOKEN_BUDGET

    predictor = predictor_of(spec, "token_budget")
    preds = predictor.predict([Question(e.question, task=task, agent=agent, method=method, model=model, type=e.type)
                               for e in examples])
    out = []
    for e, p in zip(examples, preds, strict=True):
        if p.bucket < len(predictor.edges):
            e = replace(e, meta={**e.meta, TOKEN_BUDGET: math.ceil(slack * predictor.edges[p.bucket])})
        out.append(e)
    return out
