"""The oracle agent: a gold trajectory built from gold evidence, with no model: HotpotQA's
supporting facts (sentence level, below), or evidence pages (FEVER, StrategyQA: ``_pages``).

It proves the environment + task + metric end to end before any model runs, and it is a source of
teacher-free training data (FireAct-style trajectories in the paper's format). For each supporting
page, in bridge order, it issues ``Search[title]``; where a supporting sentence is not among the
first 5 sentences that search shows, it issues ``Lookup[keyword]`` (repeated to page through) with
the keyword that reaches that sentence soonest; then ``Finish[answer]``.

Every action runs through the real environment and the observations are the real ones. The answer
is the gold answer only when every supporting sentence was actually observed; otherwise the oracle
finishes with an empty answer and says why in ``meta["oracle_miss"]`` — so its EM measures how much
of the gold evidence the local Wikipedia serves, not a tautology.
"""

from __future__ import annotations

import re
import time
from typing import Any

from pydantic import BaseModel, ConfigDict

from reactlab.types import Action, Agent, AgentTraits, Environment, EpisodeGen, Example, Step, Trajectory

_WORD = re.compile(r"\w[\w'-]*\w|\w", re.UNICODE)
_MAX_PAGING = 10  # lookups of one keyword before giving up on a sentence
_STOP = frozenset(
    ["the", "a", "an", "and", "or", "of", "in", "on", "at", "to", "for", "by", "with", "from", "as", "is", "was", "were", "are", "be", "his", "her", "its", "this", "that", "these", "those", "which", "who", "whom", "whose", "what", "when", "where", "also", "has", "had", "have", "not", "but"]
)


def _norm(s: str) -> str:
    return " ".join(s.split()).lower()


def bridge_order(example: Example) -> list[str]:
    """Supporting titles in the order a reader would search them.

    Comparison questions: the order the question mentions them. Bridge questions: the page whose
    supporting sentences mention the other page's title comes first (it leads to the bridge entity).
    """
    titles = list(dict.fromkeys(t for t, _ in example.meta.get("supporting_facts", [])))
    if len(titles) != 2:
        return titles
    a, b = titles
    q = example.question.lower()
    sents = _supporting_sentences(example)
    a_mentions_b = any(_title_key(b) in s.lower() for s in sents.get(a, []))
    b_mentions_a = any(_title_key(a) in s.lower() for s in sents.get(b, []))
    if example.type != "comparison" and a_mentions_b != b_mentions_a:
        return [a, b] if a_mentions_b else [b, a]
    pos_a, pos_b = q.find(_title_key(a)), q.find(_title_key(b))
    if pos_b >= 0 and (pos_a < 0 or pos_b < pos_a):
        return [b, a]
    return [a, b]


def _title_key(title: str) -> str:
    """``"Ed Wood (film)"`` -> ``"ed wood"``: how a title shows up in running text."""
    return re.sub(r"\s*\([^)]*\)\s*$", "", title).lower()


def _supporting_sentences(example: Example) -> dict[str, list[str]]:
    ctx = {title: sents for title, sents in example.meta.get("context", [])}
    out: dict[str, list[str]] = {}
    for title, sid in example.meta.get("supporting_facts", []):
        sents = ctx.get(title, [])
        if 0 <= sid < len(sents):
            out.setdefault(title, []).append(sents[sid].strip())
    return out


def lookup_plan(sentences: list[str], target: str, prefer: tuple[str, ...] = ()) -> tuple[str, int] | None:
    """The keyword whose lookup list reaches ``target`` soonest, and how many lookups that takes.

    Among keywords that reach it equally soon, the ``prefer`` ones (the answer, the next entity)
    come first, then longer words (a reader looks up names, not "best"). None when no keyword of
    the sentence can reach it.

    >>> lookup_plan(["Born in Paris.", "He moved to Lyon in 1990.", "Lyon is big."], "He moved to Lyon in 1990.")
    ('moved', 1)
    >>> lookup_plan(["Born in Paris.", "He moved to Lyon in 1990."], "He moved to Lyon in 1990.", ("Lyon",))
    ('Lyon', 1)
    """
    tnorm = _norm(target)
    words = [w for w in dict.fromkeys(_WORD.findall(target)) if len(w) > 2 and w.lower() not in _STOP]
    candidates = [p for p in prefer if p] + sorted(words, key=len, reverse=True)
    best: tuple[int, int, str] | None = None
    for order, kw in enumerate(candidates):
        if kw.lower() not in target.lower():
            continue
        hits = [s for s in sentences if kw.lower() in s.lower()]
        rank = next((j for j, s in enumerate(hits) if _norm(s) == tnorm), None)
        if rank is not None and (best is None or (rank, order) < best[:2]):
            best = (rank, order, kw)
    return (best[2], best[0] + 1) if best else None


class OracleOptions(BaseModel):
    """The oracle has no knobs (``RunConfig.options.oracle``): no model, no prompt, no step limit."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class OracleAgent(Agent):
    """Gold trajectories from supporting facts. Needs examples with ``supporting_facts`` and
    ``context`` (HotpotQA's distractor layouts) and an env exposing its ``index`` (``WikiEnv``)."""

    name = "oracle"
    method = ""
    prompt_id = "oracle@1"
    model = "oracle"
    traits = AgentTraits(needs_model=False, model="oracle")

    def __init__(self, task: object = None) -> None:
        """``task``: unused (the gold evidence is in the examples); taken like every agent's."""

    def episode(self, example: Example, env: Environment) -> EpisodeGen:
        t0 = time.perf_counter()
        if "evidence" in example.meta and not example.meta.get("supporting_facts"):
            return self._pages(example, env, t0)
        if not example.meta.get("supporting_facts") or not example.meta.get("context"):
            raise ValueError(
                f"example {example.id}: the oracle needs gold evidence: 'supporting_facts' and 'context' "
                "(a HotpotQA distractor-layout file) or evidence pages (FEVER, StrategyQA); this split/file has none"
            )
        env.reset(example)
        steps: list[Step] = []
        missing: list[str] = []
        support = _supporting_sentences(example)
        order = bridge_order(example)

        def act(thought: str, action: Action) -> str:
            obs, _ = env.step(action)
            steps.append(Step(i=len(steps) + 1, thought=thought, action=action, observation=obs))
            return obs

        for n, title in enumerate(order):
            thought = _search_thought(example, order, n)
            obs = act(thought, Action("search", title))
            if obs.startswith("Could not find"):
                missing.append(f"page not found: {title!r}")
                continue
            page = env.index.get(title)  # type: ignore[attr-defined]
            for sent in support.get(title, []):
                if _norm(sent) in _norm(obs):
                    continue
                nxt = tuple(re.sub(r"\s*\([^)]*\)$", "", t) for t in order[n + 1:n + 2])
                plan = lookup_plan(page.sentences if page else [], sent, prefer=(_answer_kw(example), *nxt))
                if plan is None:
                    missing.append(f"sentence not in page {title!r}: {sent[:80]!r}")
                    continue
                kw, count = plan
                seen = False
                for k in range(min(count, _MAX_PAGING)):
                    thought = (
                        f"The first sentences of {title} do not say enough. I need to look up {kw}."
                        if k == 0 else f"I need the next result for {kw}."
                    )
                    lobs = act(thought, Action("lookup", kw))
                    if _norm(sent) in _norm(lobs):
                        seen = True
                        break
                if not seen:
                    missing.append(f"lookup[{kw}] did not reach the sentence in {title!r}")
        answer = example.answer if not missing else ""
        final = f"So the answer is {answer}." if answer else "I could not find the evidence, so I cannot answer."
        act(final, Action("finish", answer))
        meta: dict[str, Any] = {"supporting_titles": order}
        if missing:
            meta["oracle_miss"] = missing
        return Trajectory(
            id=example.id, task="hotpotqa", question=example.question, gold=example.answer,
            agent=self.name, prompt_id=self.prompt_id, model=self.model, steps=steps, answer=answer,
            status="finished", type=example.type, wall_s=time.perf_counter() - t0, meta=meta,
        )
        yield  # noqa: B901 — unreachable: makes this a generator that never asks the LLM


    def _pages(self, example: Example, env: Environment, t0: float) -> Trajectory:
        """Page-level evidence (``meta["evidence"]``: sets of page titles, any one set sufficing):
        search each page of a set, in order, until every page of one set was found; the answer is
        the gold one only then. An example with no evidence set (a FEVER NOT ENOUGH INFO claim)
        finishes at once: there is nothing to read; ``None`` (the data records none for this one)
        is a miss."""
        env.reset(example)
        steps: list[Step] = []
        missing: list[str] = []

        def act(thought: str, action: Action) -> str:
            obs, _ = env.step(action)
            steps.append(Step(i=len(steps) + 1, thought=thought, action=action, observation=obs))
            return obs

        sets = example.meta["evidence"]
        if sets is None:
            missing.append("the data records no evidence for this example")
        found = sets == []
        for pages in sets or []:
            ok = True
            for n, title in enumerate(pages):
                thought = (f"I need to search {title}." if n == 0 else f"Next, I need to search {title}.")
                if act(thought, Action("search", title)).startswith("Could not find"):
                    missing.append(f"page not found: {title!r}")
                    ok = False
                    break
            if ok:
                found = True
                break
        answer = example.answer if found else ""
        final = (f"So the answer is {answer}." if sets else f"There is nothing to look up, so the answer is {answer}."
                 ) if found else "I could not find the evidence, so I cannot answer."
        act(final, Action("finish", answer))
        meta: dict[str, Any] = {"supporting_titles": [t for s in sets or [] for t in s]}
        if not found:
            meta["oracle_miss"] = missing
        return Trajectory(
            id=example.id, task="", question=example.question, gold=example.answer, agent=self.name,
            prompt_id=self.prompt_id, model=self.model, steps=steps, answer=answer, status="finished",
            type=example.type, wall_s=time.perf_counter() - t0, meta=meta,
        )


def _answer_kw(example: Example) -> str:
    a = example.answer.strip()
    return "" if a.lower() in ("yes", "no") else a


def _search_thought(example: Example, order: list[str], n: int) -> str:
    """Templated thoughts in the paper's voice (the oracle has no model to write them)."""
    if n == 0:
        if example.type == "comparison" and len(order) == 2:
            return f"I need to search {order[0]} and {order[1]}, and compare them."
        return f"I need to search {order[0]} to find what the question asks about."
    if example.type == "comparison":
        return f"Next, I need to search {order[n]}."
    return f"{order[n - 1]} leads to {order[n]}. I need to search {order[n]}."
