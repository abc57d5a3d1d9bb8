"""The runner's use of a budget predictor: start the episodes predicted to be longest first.

With ``batch_size`` episodes live at once, a long episode started last runs alone at the end (the
tail); started first, it overlaps the short ones. Ordering changes only when an episode starts,
never what it does: greedy answers are the same (``bench/budget_schedule.py`` measures both).
"""

from __future__ import annotations

from collections.abc import Sequence

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


def order_examples(examples: Sequence[Example], spec: str, *, task: str, agent: str, method: str,
                   model: str) -> list[Example]:
    """``RunConfig.order_by``: ``budget:PATH`` (a saved predictor) orders longest first."""
    kind, sep, path = spec.partition(":")
    if kind != "budget" or not sep or not path:
        raise ValueError(f"order_by {spec!r}: expected budget:PATH (a predictor.json or its directory)")
    return longest_first(examples, load_predictor(path), task=task, agent=agent, method=method, model=model)
