"""HotpotQA: loaders for the official, Hugging Face and simplified layouts, the vendored splits
(``eval``, ``train``, ``paper500``, ``dev``: data/README.md), and the official EM / F1.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from reactlab.io import DataError, read_records, require
from reactlab.paths import data_dir
from reactlab.tasks.base import paper_sample, sample
from reactlab.tasks.metrics import qa_scores
from reactlab.types import EnvFactory, Example

SPLIT_FILES = {
    "eval": "hotpotqa/dev_distractor_eval.json.gz",
    "train": "hotpotqa/distractor_train_pool.json.gz",
    "dev": "hotpotqa/dev_simplified.json.gz",
    "paper500": "hotpotqa/dev_simplified.json.gz",
}
PAPER_SEED, PAPER_N, DEV_SIZE = 233, 500, 7405


def paper500_indices(n_dev: int = DEV_SIZE) -> list[int]:
    """The ReAct protocol's sample: indices into the 7,405-question dev list.

    >>> paper500_indices()[:3]
    [3687, 6238, 5388]
    """
    return paper_sample(n_dev, PAPER_N, PAPER_SEED)


def _pairs(value: Any, where: str, field: str, keys: tuple[str, str]) -> list[list]:
    """Official ``[[a, b], ...]`` or HF ``{keys[0]: [...], keys[1]: [...]}`` as a list of pairs."""
    if isinstance(value, dict):
        a, b = value.get(keys[0]), value.get(keys[1])
        if not isinstance(a, list) or not isinstance(b, list) or len(a) != len(b):
            raise DataError(f"{where}: field {field!r} must hold equal-length lists {keys[0]!r}/{keys[1]!r}")
        return [[x, y] for x, y in zip(a, b, strict=True)]
    if isinstance(value, list):
        for item in value:
            if not (isinstance(item, (list, tuple)) and len(item) == 2):
                raise DataError(f"{where}: field {field!r} must be a list of [{keys[0]}, {keys[1]}] pairs")
        return [list(item) for item in value]
    raise DataError(f"{where}: field {field!r} must be a list of pairs or a dict of lists")


def parse_example(rec: dict[str, Any], where: str, default_id: str) -> Example:
    """One record of any supported layout -> ``Example`` (errors name ``where`` and the field)."""
    question = require(rec, "question", str, where)
    answer = require(rec, "answer", str, where)
    qid = rec.get("_id", rec.get("id", default_id))
    meta: dict[str, Any] = {}
    if "level" in rec:
        meta["level"] = rec["level"]
    if "supporting_facts" in rec:
        sf = _pairs(rec["supporting_facts"], where, "supporting_facts", ("title", "sent_id"))
        for title, sid in sf:
            if not isinstance(title, str) or not isinstance(sid, int):
                raise DataError(f"{where}: field 'supporting_facts' must hold [title, sentence index] pairs")
        meta["supporting_facts"] = sf
    if "context" in rec:
        ctx = _pairs(rec["context"], where, "context", ("title", "sentences"))
        for title, sents in ctx:
            if not isinstance(title, str) or not isinstance(sents, list):
                raise DataError(f"{where}: field 'context' must hold [title, [sentences]] pairs")
        meta["context"] = ctx
    return Example(id=str(qid), question=question, answer=answer, type=str(rec.get("type", "")), meta=meta)


def load_file(path: str | Path, id_prefix: str | None = None) -> list[Example]:
    """All examples of a HotpotQA file (official JSON list, HF JSON/JSONL, simplified); ``.gz`` ok.

    Records without an id get ``<id_prefix or file stem>-<index>``.
    """
    path = Path(path)
    prefix = id_prefix or path.name.split(".")[0]
    out = [parse_example(rec, where, f"{prefix}-{i}") for i, (where, rec) in enumerate(read_records(path))]
    ids = [e.id for e in out]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise DataError(f"{path}: duplicate example id {dup!r}")
    return out


class HotpotQA:
    """The HotpotQA task: ``examples(split)`` or ``examples(data=PATH)``; official EM/F1; the agent
    acts in ``WikiEnv`` over the local Wikipedia (a ``data`` file's own context pages join it)."""

    name = "hotpotqa"
    splits = tuple(SPLIT_FILES)
    eval_splits = ("eval", "paper500")
    metrics = ("em", "f1")
    main_metric = "em"
    default_prompt = "hotpotqa_react"

    def examples(
        self, split: str = "eval", limit: int | None = None, seed: int | None = None, data: str | Path | None = None
    ) -> list[Example]:
        """Examples in file order (``paper500``: the paper's order); ``seed`` shuffles before ``limit``."""
        if data is not None:
            exs = load_file(data)
        elif split in SPLIT_FILES:
            path = data_dir() / SPLIT_FILES[split]
            exs = load_file(path, id_prefix="dev" if split in ("dev", "paper500") else None)
            if split == "paper500":
                exs = [exs[i] for i in paper500_indices(len(exs))]
        else:
            raise ValueError(f"unknown hotpotqa split {split!r}; known: {', '.join(SPLIT_FILES)}")
        return sample(exs, limit, seed)

    def score(self, example: Example, answer: str) -> dict[str, float]:
        return qa_scores(answer, example.answers)

    @contextlib.contextmanager
    def environments(
        self, examples: Sequence[Example], *, data: str | Path | None = None,
        corpus: Sequence[str | Path] | None = None, index: Any = None,
    ) -> Iterator[EnvFactory]:
        """``WikiEnv``s over one shared index: ``index`` if given, else the index of ``corpus`` (the
        vendored pages by default). Examples read from a ``data`` file bring their context pages
        into it (they are Wikipedia pages; on a title clash the corpus's text wins); the vendored
        splits' pages are in the vendored corpus already."""
        from reactlab.envs.wikienv import WikiEnv

        if index is not None:
            yield lambda: WikiEnv(index)
            return
        from reactlab.wiki.corpus import pages_from_contexts
        from reactlab.wiki.index import get_index

        extra = pages_from_contexts(examples) if data is not None else ()
        with get_index(corpora=[Path(c) for c in corpus] if corpus else None, extra_pages=extra) as own:
            yield lambda: WikiEnv(own)
