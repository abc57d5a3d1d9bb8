"""MMLU (Hendrycks et al. 2021): four-option multiple choice over 57 subjects; correct when the
answer picks the gold letter (FireAct: the lower-cased answer starts with it; here a leading letter,
``the answer is C`` or the text of exactly one option, see ``metrics.choice_letter``); accuracy, per
subject (the question type) and macro-averaged over subjects (``Summary.macro``).

Splits: ``eval`` (test, 14,042), ``val`` (1,531) and ``dev`` (285, the 5 exemplars per subject).
``--data`` reads the original layout: a header-less CSV ``question, A, B, C, D, answer`` named
``<subject>_<split>.csv`` (``.gz`` ok), or a directory of them. The agent may search the wiki
(FireAct's setting: method ``react``) or not (method ``cot``).
"""

from __future__ import annotations

import csv
from pathlib import Path

from reactlab.io import DataError, open_file, reading
from reactlab.tasks.base import WikiTask
from reactlab.tasks.metrics import choice_letter
from reactlab.types import Example

LETTERS = "ABCD"


def subject_of(path: Path) -> str:
    """``abstract_algebra_test.csv.gz`` -> ``abstract_algebra``.

    >>> subject_of(Path("mmlu/test/high_school_physics_test.csv.gz"))
    'high_school_physics'
    """
    stem = path.name.split(".")[0]
    for split in ("_test", "_val", "_dev"):
        if stem.endswith(split):
            return stem[: -len(split)]
    return stem


def format_question(question: str, options: list[str]) -> str:
    """The question and its lettered options, one a line (what the agent reads)."""
    return question.strip() + "".join(f"\n{letter}. {o.strip()}" for letter, o in zip(LETTERS, options, strict=True))


def load_file(path: str | Path) -> list[Example]:
    """One subject's CSV, or every ``*.csv[.gz]`` of a directory (sorted by name)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.name.endswith((".csv", ".csv.gz")))
        if not files:
            raise DataError(f"{path}: no MMLU .csv files in this directory")
        return [ex for f in files for ex in load_file(f)]
    subject = subject_of(path)
    out = []
    with reading(path), open_file(path) as f:
        for lineno, row in enumerate(csv.reader(f), 1):
            if not row:
                continue
            if len(row) != 6:
                raise DataError(f"{path}:{lineno}: expected 6 fields (question, A, B, C, D, answer), got {len(row)}")
            answer = row[5].strip().upper()
            if answer not in LETTERS:
                raise DataError(f"{path}:{lineno}: field 'answer' must be one of A-D, not {row[5]!r}")
            out.append(Example(id=f"{subject}-{lineno}", question=format_question(row[0], row[1:5]), answer=answer,
                               type=subject, meta={"options": [o.strip() for o in row[1:5]]}))
    return out


class MMLU(WikiTask):
    name = "mmlu"
    split_files = {"eval": "mmlu/test", "val": "mmlu/val", "dev": "mmlu/dev"}
    eval_splits = ("eval", "val")
    default_prompt = "mmlu_react"

    def load(self, path: Path) -> list[Example]:
        return load_file(path)

    def score(self, example: Example, answer: str) -> dict[str, float]:
        return {"accuracy": float(choice_letter(answer, example.meta.get("options", ())) == example.answer)}
