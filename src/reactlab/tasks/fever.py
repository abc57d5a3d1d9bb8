"""FEVER (Thorne et al. 2018) as the ReAct paper ran it: verify a claim against Wikipedia and
finish with SUPPORTS, REFUTES or NOT ENOUGH INFO; label accuracy.

``eval`` is the paper's 500-claim sample of ReAct's dev copy, ``train`` the lines no ``eval`` or
``dev`` run sees. The local corpus is not all of Wikipedia, so ``prepare`` records whether a claim's
evidence pages are indexed (``covered``) and accuracy is split by it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reactlab.io import DataError, iter_jsonl, require
from reactlab.tasks.base import WikiTask, paper_sample, with_coverage
from reactlab.tasks.metrics import FEVER_LABELS, fever_label
from reactlab.types import Example

POOL = 7405
_ESCAPES = {"-LRB-": "(", "-RRB-": ")", "-LSB-": "[", "-RSB-": "]", "-LCB-": "{", "-RCB-": "}", "-COLON-": ":"}


def page_title(fever_id: str) -> str:
    """FEVER's page id as a Wikipedia title.

    >>> page_title("Soul_Food_-LRB-film-RRB-")
    'Soul Food (film)'
    """
    for k, v in _ESCAPES.items():
        fever_id = fever_id.replace(k, v)
    return fever_id.replace("_", " ")


def evidence_sets(raw: Any, where: str) -> list[list[str]]:
    """FEVER's ``evidence`` (sets of ``[annotation id, evidence id, page, sentence]``) as sets of
    page titles; NOT ENOUGH INFO claims have none."""
    if not isinstance(raw, list):
        raise DataError(f"{where}: field 'evidence' must be a list of evidence sets")
    out = []
    for es in raw:
        if not isinstance(es, list):
            raise DataError(f"{where}: field 'evidence' must be a list of evidence sets")
        titles = [page_title(e[2]) for e in es if isinstance(e, list) and len(e) == 4 and isinstance(e[2], str)]
        if titles:
            out.append(list(dict.fromkeys(titles)))
    return out


def load_file(path: str | Path) -> list[Example]:
    """A FEVER JSONL file (``.gz`` ok): one claim a line."""
    out = []
    for where, rec in iter_jsonl(path):
        if not isinstance(rec, dict):
            raise DataError(f"{where}: expected a JSON object")
        claim = require(rec, "claim", str, where)
        label = require(rec, "label", str, where)
        if label not in FEVER_LABELS:
            raise DataError(f"{where}: field 'label' must be one of {', '.join(FEVER_LABELS)}, not {label!r}")
        out.append(Example(id=str(rec.get("id", where.rsplit(":", 1)[1])), question=claim, answer=label, type=label,
                           meta={"evidence": evidence_sets(rec.get("evidence", []), where)}))
    return out


class FEVER(WikiTask):
    name = "fever"
    split_files = {"eval": "fever/paper_dev.jsonl.gz", "dev": "fever/paper_dev.jsonl.gz",
                   "train": "fever/paper_dev.jsonl.gz"}
    eval_splits = ("eval", "dev")
    metrics = ("accuracy", "covered", "accuracy_covered", "accuracy_uncovered")
    default_prompt = "fever_react"

    def load(self, path: Path) -> list[Example]:
        return load_file(path)

    def select(self, split: str, examples: list[Example]) -> list[Example]:
        if split == "eval":
            return [examples[i] for i in paper_sample(min(POOL, len(examples)))]
        return examples[:POOL] if split == "dev" else examples[POOL:]

    def prepare(self, examples: Sequence[Example], index: Any) -> None:
        for ex in examples:
            if ex.meta.get("evidence"):
                ex.meta["covered"] = any(all(index.get(t) is not None for t in es) for es in ex.meta["evidence"])

    def score(self, example: Example, answer: str) -> dict[str, float]:
        return with_coverage({"accuracy": float(fever_label(answer) == example.answer)}, example)
