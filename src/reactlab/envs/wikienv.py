"""The ReAct paper's Wikipedia environment (as its authors' code has it), over the offline index.

Observations follow the paper word for word, because prompts, exemplars and fine-tuning data were
all written against them. Deliberate deviations: our corpus is already sentence-split, so pages are
not re-split on ". " (the paper appended a "." to every fragment); observations carry no newlines
and no ``reward = 0`` suffix.
"""

from __future__ import annotations

from reactlab.types import Action, Example
from reactlab.wiki.index import WikiIndex

PAGE_SENTENCES = 5
"""Sentences shown for a found page (the paper's ``sentences[:5]``)."""

SIMILAR_K = 5
"""Titles listed after ``Could not find``."""

MAX_INVALID_CHARS = 200
"""An invalid action is echoed back cut to this many characters (a model's rambling stays bounded)."""


def _one_line(text: str, limit: int) -> str:
    """Newlines become spaces (an observation is one line of the prompt); cut to ``limit`` chars.

    >>> _one_line("a\\nb\\r\\nc", 10)
    'a b  c'
    """
    text = text.replace("\r", " ").replace("\n", " ")
    return text if len(text) <= limit else text[:limit]


def page_observation(sentences: list[str]) -> str:
    """What a found page shows: its first sentences joined by a single space.

    >>> page_observation(["A.", "B.", "C.", "D.", "E.", "F."])
    'A. B. C. D. E.'
    """
    return " ".join(sentences[:PAGE_SENTENCES])


def not_found_observation(entity: str, titles: list[str]) -> str:
    """The paper's miss: ``f"Could not find {entity}. Similar: {titles[:5]}."``.

    >>> not_found_observation("Foo Barz", ["Foo Bar", "Foo (band)"])
    "Could not find Foo Barz. Similar: ['Foo Bar', 'Foo (band)']."
    """
    return f"Could not find {entity}. Similar: {titles[:SIMILAR_K]}."


def lookup_list(sentences: list[str], keyword: str) -> list[str]:
    """The sentences containing ``keyword``, case-insensitively, in page order.

    >>> lookup_list(["Born in 1966.", "He directed Sinister.", "BORN again."], "born")
    ['Born in 1966.', 'BORN again.']
    """
    key = keyword.lower()
    return [s for s in sentences if key in s.lower()]


def lookup_observation(results: list[str], i: int) -> str:
    """The ``i``-th (0-based) lookup result: ``(Result {i+1} / {n}) {sentence}`` or ``No more results.``

    >>> lookup_observation(["x.", "y."], 1)
    '(Result 2 / 2) y.'
    >>> lookup_observation(["x."], 1)
    'No more results.'
    """
    if i >= len(results):
        return "No more results."
    return f"(Result {i + 1} / {len(results)}) {results[i]}"


def search_observation(index: WikiIndex, query: str, max_obs_chars: int = 2000) -> str:
    """Exactly what a fresh :class:`WikiEnv` answers to ``search[query]`` (used by ``reactlab wiki search``)."""
    env = WikiEnv(index, max_obs_chars=max_obs_chars)
    return env.step(Action("search", query))[0]


class WikiEnv:
    """One episode's Wikipedia tool (implements :class:`reactlab.types.Environment`).

    Make one per live episode; the ``index`` may be shared. After a ``finish``, ``answer`` holds the
    answer and every further step returns ``("Episode finished.", True)``.
    """

    def __init__(self, index: WikiIndex, max_obs_chars: int = 2000) -> None:
        self.index = index
        self.max_obs_chars = max_obs_chars
        self.question = ""
        self._clear()

    def _clear(self) -> None:
        self.page: list[str] | None = None  # sentences of the current page
        self.page_title: str | None = None
        self.result_titles: list[str] = []
        self.answer: str | None = None
        self.steps = 0
        self._reset_lookup()

    def _reset_lookup(self) -> None:
        self.lookup_keyword: str | None = None
        self.lookup_results: list[str] = []
        self.lookup_cnt = 0

    def reset(self, example: Example) -> str:
        """Start an episode: forget page, lookup and answer; return the question."""
        self._clear()
        self.question = example.question
        return example.question

    def step(self, action: Action) -> tuple[str, bool]:
        """Apply one action; return ``(observation, done)``. Never raises on a model's mistake."""
        if self.answer is not None:  # as in the paper: an episode stays finished
            return "Episode finished.", True
        self.steps += 1
        name = action.name.lower()
        done = False
        if name == "search":
            obs = self._search(action.arg)
        elif name == "lookup":
            obs = self._lookup(action.arg)
        elif name == "finish":
            self.answer = action.arg
            obs, done = "Episode finished.", True
        elif name == "think":
            obs = "Nice thought."
        else:
            shown = str(action)
            if len(shown) > MAX_INVALID_CHARS:
                shown = shown[:MAX_INVALID_CHARS] + "..."
            obs = f"Invalid action: {shown}"
        return _one_line(obs, self.max_obs_chars), done

    def _search(self, entity: str) -> str:
        page = self.index.get(entity)
        if page is None:  # as in the paper: the current page and its lookup state stay as they were
            self.result_titles = self.index.similar(entity, k=SIMILAR_K)
            return not_found_observation(entity, self.result_titles)
        self._reset_lookup()
        self.page, self.page_title = page.sentences, page.title
        return page_observation(page.sentences)

    def _lookup(self, keyword: str) -> str:
        if keyword != self.lookup_keyword:  # the paper: a new keyword starts a new result list
            self.lookup_keyword = keyword
            self.lookup_results = lookup_list(self.page, keyword) if self.page is not None else []
            self.lookup_cnt = 0
        obs = lookup_observation(self.lookup_results, self.lookup_cnt)
        if self.lookup_cnt < len(self.lookup_results):
            self.lookup_cnt += 1
        return obs
