"""What the tasks whose agent searches the local Wikipedia share: splits that are vendored files,
``--data`` files in the official layout, seeded sampling, and one ``WikiEnv`` index per run.

A task subclasses ``WikiTask``, names its ``split_files`` (paths under the data pack; a split may
also be a subset of a file, see ``select``), and writes ``load(path)`` (one official-layout file or
directory -> examples, errors naming file and line) and ``score``. ``prepare(examples, index)``
runs once the index is open: the place to record, per example, whether the local corpus holds its
evidence (``meta["covered"]``).
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from reactlab.paths import data_dir
from reactlab.types import EnvFactory, Example

PAPER_SEED = 233
"""The ReAct paper's sampling seed: ``random.Random(233).shuffle(list(range(pool)))``, first N."""


def paper_sample(n_pool: int, n: int = 500, seed: int = PAPER_SEED) -> list[int]:
    """Indices of the ReAct protocol's sample of ``n`` out of the first ``n_pool`` records.

    >>> paper_sample(10, 3)
    [5, 9, 0]
    """
    idxs = list(range(n_pool))
    random.Random(seed).shuffle(idxs)
    return idxs[:n]


def sample(examples: list[Example], limit: int | None = None, seed: int | None = None) -> list[Example]:
    """``examples`` shuffled with ``seed`` (when given), then the first ``limit``.

    >>> [e.id for e in sample([Example(str(i), "?", "") for i in range(5)], limit=2)]
    ['0', '1']
    """
    if seed is not None:
        examples = list(examples)
        random.Random(seed).shuffle(examples)
    return examples[:limit] if limit is not None else examples


class WikiTask:
    """Base of a task whose agent acts in ``WikiEnv`` over the local index (see the module doc)."""

    name = ""
    split_files: dict[str, str] = {}
    eval_splits: tuple[str, ...] = ("eval",)
    metrics: tuple[str, ...] = ("accuracy",)
    main_metric = "accuracy"
    default_prompt = ""

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(self.split_files)

    def load(self, path: Path) -> list[Example]:
        raise NotImplementedError

    def select(self, split: str, examples: list[Example]) -> list[Example]:
        """The part of a split's file that is the split (all of it by default)."""
        return examples

    def examples(
        self, split: str = "eval", limit: int | None = None, seed: int | None = None, data: str | Path | None = None
    ) -> list[Example]:
        """Examples in file order; ``seed`` shuffles before ``limit``; ``data``: a file instead of a split."""
        if data is not None:
            exs = self.load(Path(data))
        elif split in self.split_files:
            exs = self.select(split, self.load(data_dir() / self.split_files[split]))
        else:
            raise ValueError(f"unknown {self.name} split {split!r}; known: {', '.join(self.split_files)}")
        return sample(exs, limit, seed)

    def prepare(self, examples: Sequence[Example], index: Any) -> None:
        """Called with the open index before the episodes run (nothing by default)."""

    @contextlib.contextmanager
    def environments(
        self, examples: Sequence[Example], *, data: str | Path | None = None,
        corpus: Sequence[str | Path] | None = None, index: Any = None,
    ) -> Iterator[EnvFactory]:
        """``WikiEnv``s over ``index``, or over the index of ``corpus`` (the vendored pages by default)."""
        from reactlab.envs.wikienv import WikiEnv

        if index is not None:
            self.prepare(examples, index)
            yield lambda: WikiEnv(index)
            return
        from reactlab.wiki.index import get_index

        with get_index(corpora=[Path(c) for c in corpus] if corpus else None) as own:
            self.prepare(examples, own)
            yield lambda: WikiEnv(own)


def with_coverage(scores: dict[str, float], example: Example, metric: str = "accuracy") -> dict[str, float]:
    """``scores`` plus ``covered`` (1/0) and the metric again as ``<metric>_covered`` or
    ``<metric>_uncovered``, when ``prepare`` recorded the example's coverage.

    >>> with_coverage({"accuracy": 1.0}, Example("q", "?", "a", meta={"covered": False}))
    {'accuracy': 1.0, 'covered': 0.0, 'accuracy_uncovered': 1.0}
    """
    covered = example.meta.get("covered")
    if covered is None:
        return scores
    key = f"{metric}_covered" if covered else f"{metric}_uncovered"
    return {**scores, "covered": float(bool(covered)), key: scores[metric]}
