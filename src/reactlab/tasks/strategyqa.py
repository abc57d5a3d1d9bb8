"""StrategyQA (Geva et al. 2021): yes/no questions that need an implicit multi-step strategy;
correct when the answer starts with the gold yes/no (FireAct's rule), accuracy.

Splits: ``eval`` (dev, 229) and ``train`` (train_filtered, 2,821: training data and our exemplars).
``--data`` reads StrategyQA's JSON list layout (``qid, question, answer`` as a boolean; ``facts``
and ``evidence`` kept when present). The evidence's Wikipedia pages (``"Title-<paragraph>"``) of
the first annotation are ``meta["evidence"]``: ``prepare`` records whether the index holds them
(``covered``) and the oracle reads them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reactlab.io import DataError, read_records, require
from reactlab.tasks.base import WikiTask, with_coverage
from reactlab.tasks.metrics import yes_no
from reactlab.types import Example


def evidence_pages(evidence: Any) -> list[str]:
    """Page titles of the first annotation's evidence (``[[["Albany, Georgia-1"]], ["operation"]]``).

    >>> evidence_pages([[[["Albany, Georgia-1"]], [["Albany, New York-2", "Albany, New York-3"]], ["operation"]]])
    ['Albany, Georgia', 'Albany, New York']
    """
    pages: list[str] = []

    def walk(x: Any) -> None:
        if isinstance(x, str):
            if x not in ("operation", "no_evidence") and "-" in x:
                pages.append(x.rsplit("-", 1)[0])
        elif isinstance(x, list):
            for y in x:
                walk(y)

    if isinstance(evidence, list) and evidence:
        walk(evidence[0])
    return list(dict.fromkeys(pages))


def load_file(path: str | Path) -> list[Example]:
    out = []
    for where, rec in read_records(path):
        question = require(rec, "question", str, where)
        answer = require(rec, "answer", bool, where)
        qid = rec.get("qid", rec.get("id"))
        if qid is None:
            raise DataError(f"{where}: field 'qid' missing")
        meta: dict[str, Any] = {"facts": list(rec.get("facts", []))}
        if "evidence" in rec:  # the oracle reads it; None: this question's annotation names no page
            pages = evidence_pages(rec["evidence"])
            meta["evidence"] = [pages] if pages else None
        out.append(Example(id=str(qid), question=question, answer="yes" if answer else "no", meta=meta))
    return out


class StrategyQA(WikiTask):
    name = "strategyqa"
    split_files = {"eval": "strategyqa/dev.json.gz", "train": "strategyqa/train_filtered.json.gz"}
    metrics = ("accuracy", "covered", "accuracy_covered", "accuracy_uncovered")
    default_prompt = "strategyqa_react"

    def load(self, path: Path) -> list[Example]:
        return load_file(path)

    def prepare(self, examples: Sequence[Example], index: Any) -> None:
        for ex in examples:
            if ex.meta.get("evidence"):
                ex.meta["covered"] = all(index.get(t) is not None for t in ex.meta["evidence"][0])

    def score(self, example: Example, answer: str) -> dict[str, float]:
        return with_coverage({"accuracy": float(yes_no(answer) == example.answer)}, example)
