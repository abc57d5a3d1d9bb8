"""MMLU (Hendrycks et al. 2021): four-option multiple choice over 57 subjects; accuracy per subject
and macro-averaged. Deliberate deviation from FireAct's rule (the lower-cased answer starts with the
letter): a leading letter, ``the answer is C`` or the text of exactly one option counts
(``metrics.choice_letter``). ``--prompt dev5`` is the benchmark's own 5-shot prompt.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from functools import cached_property
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

    @cached_property
    def _dev(self) -> dict[str, list[Example]]:
        by_subject: dict[str, list[Example]] = defaultdict(list)
        for ex in self.examples("dev"):
            by_subject[ex.type].append(ex)
        return by_subject

    def dev_prefix(self, subject: str, k: int = 5) -> str:
        """The few-shot part of MMLU's own prompt for ``subject``: its header and the first ``k`` dev
        questions with their answers (the question and ``Answer:`` follow).

        >>> print(MMLU().dev_prefix("astronomy", 1))
        The following are multiple choice questions (with answers) about astronomy.
        <BLANKLINE>
        You are pushing a truck along a road. Would it be easier to accelerate this truck on Mars? Why? (Assume there is no friction)
        A. It would be harder since the truck is heavier on Mars.
        B. It would be easier since the truck is lighter on Mars.
        C. It would be harder since the truck is lighter on Mars.
        D. It would be the same no matter where you are.
        Answer: D
        <BLANKLINE>
        <BLANKLINE>
        """
        shots = self._dev.get(subject, [])
        if k > len(shots):
            raise ValueError(f"mmlu: the dev split has {len(shots)} exemplars of subject {subject!r}, not {k}")
        head = f"The following are multiple choice questions (with answers) about {subject.replace('_', ' ')}.\n\n"
        return head + "".join(f"{ex.question}\nAnswer: {ex.answer}\n\n" for ex in shots[:k])

    def score(self, example: Example, answer: str) -> dict[str, float]:
        return {"accuracy": float(choice_letter(answer, example.meta.get("options", ())) == example.answer)}
