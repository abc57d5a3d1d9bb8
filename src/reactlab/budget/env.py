"""Cheap facts from the agent's environment about a question, before any episode: whether the local
wiki has a page titled by the question's main entity, how many candidate entities it names and how
many of those have a page, and the best BM25 score of the question and of its main entity.

A question whose entity is a page title is often answered in a step or two; one whose words match
nothing well sends the agent searching. Everything is read from the local index (``reactlab.wiki``,
the vendored corpus by default): no network. The BM25 scores come from the index's own FTS5 table
(``ORDER BY rank`` is its title-weighted BM25), asked the terms ``WikiIndex.similar`` would use.
"""

from __future__ import annotations

import re
from typing import Any

CAPS = re.compile(r"\b[A-Z][\w'.-]*(?:\s+(?:(?:of|the|de|von|van|da)\s+)?[A-Z][\w'.-]*)*")
WH_WORDS = ("what", "which", "who", "whom", "whose", "where", "when", "how", "why", "is", "are", "was", "were", "do", "did")

ENV_FEATURES = ("env_entities", "env_pages", "env_main_page", "env_bm25", "env_bm25_main")


def entities(question: str) -> list[str]:
    """The question's capitalised spans (its candidate entities), a leading question word dropped.

    >>> entities("Who is older, Ed Wood or Tim Burton?")
    ['Ed Wood', 'Tim Burton']
    """
    words = question.split()
    first = words[0].lower().strip("\"'") if words else ""
    rest = " ".join(words[1:]) if first in WH_WORDS else question
    return [m.strip(" .'") for m in CAPS.findall(rest) if m.strip(" .'")]


def best_bm25(index: Any, text: str) -> float:
    """The best title-weighted BM25 score of ``text``'s terms over the index (0.0: no match)."""
    from reactlab.wiki.index import _clean, match_expression, query_terms

    terms = query_terms(_clean(text))
    if not terms:
        return 0.0
    rows = index._query("SELECT rank FROM fts WHERE fts MATCH ? ORDER BY rank LIMIT 1",
                        (match_expression(index._affordable(terms)),))
    return float(-rows[0][0]) if rows else 0.0  # FTS5's rank is the negated score


class EnvFeatures:
    """``ENV_FEATURES`` of questions over one wiki index (``index``: an open ``WikiIndex``; None:
    the default corpus's, opened at the first question), cached per question."""

    def __init__(self, index: Any = None):
        self.index, self._own = index, False
        self._cache: dict[str, dict[str, float]] = {}

    def _index(self) -> Any:
        if self.index is None:
            from reactlab.wiki.index import get_index

            self.index, self._own = get_index(), True
        return self.index

    def __call__(self, question: str) -> dict[str, float]:
        if question not in self._cache:
            index = self._index()
            spans = entities(question)
            main = max(spans, key=len) if spans else ""
            pages = [index.get(s) is not None for s in spans]
            self._cache[question] = {
                "env_entities": float(len(spans)), "env_pages": float(sum(pages)),
                "env_main_page": float(bool(main) and index.get(main) is not None),
                "env_bm25": best_bm25(index, question), "env_bm25_main": best_bm25(index, main) if main else 0.0}
        return self._cache[question]

    def close(self) -> None:
        if self._own and self.index is not None:
            self.index.close()
            self.index, self._own = None, False
