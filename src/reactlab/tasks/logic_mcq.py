"""Chinese logical-reasoning multiple choice (the Tianchi complex-reasoning contest, round 1): a
problem's shared text with several lettered questions; accuracy per question, and per problem as
``by_type``. Splits by a seeded hash of the problem, so all its questions fall on one side. No tool:
the agent is the Answer -> Evaluate pipeline (``--agent pipeline``).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from reactlab.io import DataError, read_records, require
from reactlab.tasks.base import WikiTask
from reactlab.types import EnvFactory, Example

LETTERS = "ABCDEFG"
EVAL_SHARE = 0.2
SPLIT_SEED = "logic_mcq-1"


def problem_split(problem_id: str, share: float = EVAL_SHARE, seed: str = SPLIT_SEED) -> str:
    """``eval`` or ``train`` for a problem, from a seeded hash of its id (stable across machines
    and Python versions, unlike ``hash``).

    >>> problem_split("round1_train_data_000"), problem_split("round1_train_data_001")
    ('train', 'train')
    """
    h = int.from_bytes(hashlib.sha256(f"{seed}:{problem_id}".encode()).digest()[:8], "big")
    return "eval" if h / 2**64 < share else "train"


def format_question(problem: str, question: str, options: Sequence[str]) -> str:
    """What the agent reads: the problem, the question, the lettered options (one a line).

    >>> print(format_question("规则。", "选择题 1：\\n哪一个？", ["是", "否"]))
    规则。
    <BLANKLINE>
    选择题 1：
    哪一个？
    A. 是
    B. 否
    """
    body = f"{problem.strip()}\n\n{question.strip()}"
    return body + "".join(f"\n{letter}. {str(o).strip()}" for letter, o in zip(LETTERS, options, strict=False))


def load_file(path: str | Path) -> list[Example]:
    """Every question of every problem in the file, in file order; ids ``<problem id>/<n>``."""
    out: list[Example] = []
    for where, rec in read_records(path):
        pid = str(require(rec, "id", (str, int), where))
        problem = require(rec, "problem", str, where)
        questions = require(rec, "questions", list, where)
        for qi, q in enumerate(questions):
            at = f"{where}: questions[{qi}]"
            if not isinstance(q, dict):
                raise DataError(f"{at}: expected an object, got {type(q).__name__}")
            text = require(q, "question", str, at)
            options = require(q, "options", list, at)
            if not 2 <= len(options) <= len(LETTERS):
                raise DataError(f"{at}: field 'options' must hold 2-{len(LETTERS)} options, got {len(options)}")
            if "answer" not in q:
                raise DataError(f"{at}: field 'answer' missing (a file without answers cannot be scored)")
            answer = str(q["answer"]).strip().upper()
            if len(answer) != 1 or answer not in LETTERS[: len(options)]:
                raise DataError(f"{at}: field 'answer' must be one of A-{LETTERS[len(options) - 1]}, not {q['answer']!r}")
            out.append(Example(
                id=f"{pid}/{qi}", question=format_question(problem, text, options), answer=answer, type=pid,
                meta={"options": [str(o).strip() for o in options], "problem": problem.strip(),
                      "question": text.strip(), "problem_id": pid},
            ))
    return out


class LogicMCQ(WikiTask):
    name = "logic_mcq"
    split_files = {"eval": "logic_mcq/round1_train_data.jsonl.gz", "train": "logic_mcq/round1_train_data.jsonl.gz",
                   "all": "logic_mcq/round1_train_data.jsonl.gz"}
    eval_splits = ("eval",)
    metrics = ("accuracy", "chance")
    default_prompt = "logic_mcq_pipeline"

    def load(self, path: Path) -> list[Example]:
        return load_file(path)

    def select(self, split: str, examples: list[Example]) -> list[Example]:
        if split == "all":
            return examples
        return [e for e in examples if problem_split(e.meta["problem_id"]) == split]

    def score(self, example: Example, answer: str) -> dict[str, float]:
        letter = answer.strip().upper()
        options = example.meta.get("options")  # absent when data/select.py scores a bare trajectory
        return {"accuracy": float(letter == example.answer), **({"chance": 1.0 / len(options)} if options else {})}

    @contextlib.contextmanager
    def environments(
        self, examples: Sequence[Example], *, data: str | Path | None = None,
        corpus: Sequence[str | Path] | None = None, index: Any = None,
    ) -> Iterator[EnvFactory]:
        """No tool, so no index: every episode gets a ``NoToolEnv``."""
        from reactlab.envs.none import NoToolEnv

        yield NoToolEnv
