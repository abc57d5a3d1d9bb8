"""Bamboogle (Press et al. 2022): 125 two-hop questions that Google's answer box got wrong,
scored as FireAct scores it: EM (and F1) after SQuAD/HotpotQA normalisation.

One split, ``eval`` (all 125; there is no training split). ``--data`` reads a CSV with the header
``Question,Answer``. ``prepare`` records whether the gold answer occurs anywhere in the local corpus
(``covered``): where it does not, a search agent cannot read it, only know it.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reactlab.io import DataError, open_file, reading
from reactlab.tasks.base import WikiTask, with_coverage
from reactlab.tasks.metrics import qa_scores
from reactlab.types import Example


def load_file(path: str | Path) -> list[Example]:
    """A Bamboogle CSV (``.gz`` ok): header ``Question,Answer``, one question a row."""
    out: list[Example] = []
    with reading(path), open_file(path) as f:
        rows = csv.reader(f)
        header = [h.strip().lower() for h in next(rows, [])]
        if header[:2] != ["question", "answer"]:
            raise DataError(f"{path}:1: expected the header 'Question,Answer', got {','.join(header)!r}")
        for lineno, row in enumerate(rows, 2):
            if not any(c.strip() for c in row):
                continue
            if len(row) < 2 or not row[0].strip() or not row[1].strip():
                raise DataError(f"{path}:{lineno}: expected a question and an answer")
            out.append(Example(id=f"bamboogle-{len(out)}", question=row[0].strip(), answer=row[1].strip()))
    return out


class Bamboogle(WikiTask):
    name = "bamboogle"
    split_files = {"eval": "bamboogle/test.csv.gz"}
    metrics = ("em", "f1", "covered", "em_covered", "em_uncovered")
    main_metric = "em"
    default_prompt = "hotpotqa_react"  # two-hop QA like HotpotQA's; Bamboogle has no split to draw exemplars from

    def load(self, path: Path) -> list[Example]:
        return load_file(path)

    def prepare(self, examples: Sequence[Example], index: Any) -> None:
        for ex in examples:
            ex.meta["covered"] = index.mentions(ex.answer)

    def score(self, example: Example, answer: str) -> dict[str, float]:
        return with_coverage(qa_scores(answer, example.answers), example, metric="em")
