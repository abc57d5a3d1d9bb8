"""Reward functions for RL fine-tuning, in TRL's reward signature, and the pure helpers they use.

A reward function is ``f(prompts, completions, **columns) -> list[float]``, one float per
completion: TRL's ``GRPOTrainer``/``RLOOTrainer`` pass the dataset's other columns as keyword lists
(``answer=[...]``), one entry per completion. A completion is a string (the paper's completion
layout: ``Thought 1: ...\\nAction 1: Search[X]\\nObservation 1: ...``, or a bare answer) or a chat
message list (FireAct: assistant turns ``Thought: ...\\nAction: search[X]``, user turns
``Observation: ...``). Actions are read by ``reactlab.agents.parsing`` (the parser the agents use, so
a rewarded action is one the agent would run) and answers scored by ``reactlab.tasks.metrics``.

Rewards:

- ``exact_match_reward`` / ``f1_reward``: EM / F1 of the final ``finish[...]`` answer against the
  ``answer`` column (a string or a list of aliases); 0 when the completion does not end in a finish;
- ``format_reward``: the fraction of steps whose action parses (0 for no step);
- ``step_cost_reward``: ``-step_cost`` per step (a small push towards shorter trajectories);
- ``evidence_recall_reward``: the share of the question's supporting pages (the ``evidence``
  column) that the agent's searches actually opened;
- ``answer_in_observation_reward``: 1 when a gold answer appears in an observation the agent read;
- ``budget_reward``: the graded numeric reward of a budget predictor against the ``budget``
  column: 12 points exact, 6 within 1, 3 within 2, else 0 (no number: 0).

The two grounded rewards are dense (a failed episode that found the right page still scores) and
gated against farming: they count only in an episode that ends in an answer (``finish[...]``), and
the recipes weigh them below the answer's own rewards, so opening many pages and not answering
never beats answering (``tests/train/test_rewards.py`` scripts that adversary).

Nothing here imports torch or TRL.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

from reactlab.agents.parsing import parse_action, split_thought_action
from reactlab.tasks.metrics import normalize_answer, qa_scores
from reactlab.types import Action

Completion = str | list[dict[str, Any]]

_ACTION_LINE = re.compile(r"^[ \t]*Action(?: \d+)?:[ \t]*(.*)$", re.MULTILINE)
_OBSERVATION_LINE = re.compile(r"^[ \t]*Observation(?: \d+)?:[ \t]*(.*)$", re.MULTILINE)
NOT_FOUND = "Could not find "
"""How ``WikiEnv`` begins a search that found no page (``envs.wikienv.not_found_observation``)."""
# A number not glued to a word or another number ("gpt4", "v2.1" are not numbers; "~200" is):
# digits with optional thousands commas and decimals, an optional minus only at a word boundary.
_NUMBER = re.compile(r"(?<![\w.,-])-?\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\d,])|(?<![\w.,-])-?\d+(?:\.\d+)?")


# --- reading completions -------------------------------------------------------------------------


def assistant_texts(completion: Completion) -> list[str]:
    """The model's turns of a completion: each assistant message's content, or the string itself.

    >>> assistant_texts([{"role": "assistant", "content": "a"}, {"role": "user", "content": "o"}])
    ['a']
    >>> assistant_texts("Thought 1: x")
    ['Thought 1: x']
    """
    if isinstance(completion, str):
        return [completion]
    return [str(m.get("content") or "") for m in completion if m.get("role") == "assistant"]


def actions(completion: Completion) -> list[Action]:
    """Every step's action, in order. Chat: one per assistant turn (a turn without an
    ``Action:`` line is ``Action("invalid", "")``). Text: one per ``Action:`` / ``Action N:`` line;
    a text with no such line is one step, the text read as a bare action (``finish[Paris]``).

    >>> actions("Thought 1: go\\nAction 1: Search[X]\\nObservation 1: X.\\nThought 2: so\\nAction 2: Finish[y]")
    [Action(name='search', arg='X'), Action(name='finish', arg='y')]
    >>> actions([{"role": "assistant", "content": "Thought: hm"}, {"role": "assistant", "content": "finish[z]"}])
    [Action(name='invalid', arg=''), Action(name='finish', arg='z')]
    """
    if isinstance(completion, str):
        lines = _ACTION_LINE.findall(completion)
        return [parse_action(a) for a in lines] if lines else [parse_action(completion)]
    out = []
    for text in assistant_texts(completion):
        _, act = split_thought_action(text)
        if act is None and not text.lstrip().lower().startswith("thought"):
            act = text  # a turn that is only an action, with no labels
        out.append(parse_action(act) if act is not None else Action("invalid", ""))
    return out


def final_answer(completion: Completion) -> str | None:
    """The argument of the last action when it is ``finish``, else None (no answer given).

    >>> final_answer("Thought 1: so\\nAction 1: Finish[Paris]"), final_answer("Action 1: Search[X]")
    ('Paris', None)
    """
    acts = actions(completion)
    return acts[-1].arg if acts and acts[-1].name == "finish" else None


def observations(completion: Completion) -> list[str | None]:
    """The observation each step's action got, in step order (None where none follows: the last
    step, or a step the episode ended on). Chat: the user turn after each assistant turn, without
    its ``Observation:`` label; text: the ``Observation N:`` lines, taken in order.

    >>> observations([{"role": "assistant", "content": "Action: search[X]"}, {"role": "user", "content": "Observation: X is."},
    ...               {"role": "assistant", "content": "Action: finish[y]"}])
    ['X is.', None]
    >>> observations("Action 1: Search[X]\\nObservation 1: X is.\\nAction 2: Finish[y]")
    ['X is.', None]
    """
    if isinstance(completion, str):
        obs: list[str | None] = list(_OBSERVATION_LINE.findall(completion))
        n = len(actions(completion))
        return (obs + [None] * n)[:n]
    out: list[str | None] = []
    for k, m in enumerate(completion):
        if m.get("role") != "assistant":
            continue
        nxt = completion[k + 1] if k + 1 < len(completion) else None
        text = str(nxt.get("content") or "") if nxt is not None and nxt.get("role") != "assistant" else None
        out.append(re.sub(r"^\s*Observation(?: \d+)?:\s*", "", text) if text is not None else None)
    return out


def opened_pages(completion: Completion) -> list[str]:
    """The pages the agent's searches opened, in order: each ``search[title]`` whose observation is
    a page (not ``Could not find ...``); the title as the agent wrote it (``WikiIndex.get`` matches
    titles loosely, so compare them with ``normalize_title``).

    >>> opened_pages("Action 1: Search[Paris]\\nObservation 1: Paris is.\\nAction 2: Search[Parsi]\\n"
    ...              "Observation 2: Could not find Parsi. Similar: ['Paris'].\\nAction 3: Finish[y]")
    ['Paris']
    """
    return [a.arg for a, o in zip(actions(completion), observations(completion), strict=True)
            if a.name == "search" and o is not None and not o.startswith(NOT_FOUND) and not o.startswith("Invalid action")]


def evidence_recall(opened: Sequence[str], evidence: Sequence[str] | Sequence[Sequence[str]]) -> float:
    """The share of the supporting pages among ``opened`` (titles compared loosely). ``evidence``
    is one list of titles (HotpotQA's supporting pages) or several (FEVER's evidence sets, any one
    sufficing: the best set counts); 0.0 for no evidence.

    >>> evidence_recall(["scott derrickson", "Ed Wood (film)"], ["Scott Derrickson", "Ed Wood"])
    0.5
    >>> evidence_recall(["B"], [["A", "B"], ["B"]])
    1.0
    """
    from reactlab.wiki.index import normalize_title

    sets: list[list[str]] = ([[str(t) for t in evidence]] if all(isinstance(t, str) for t in evidence)
                             else [[str(t) for t in s] for s in evidence])
    seen = {normalize_title(t) for t in opened}
    best = 0.0
    for titles in sets:
        keys = {normalize_title(t) for t in titles}
        if keys:
            best = max(best, len(keys & seen) / len(keys))
    return best


def answer_in_text(golds: Sequence[str], text: str) -> bool:
    """A gold answer (SQuAD-normalised) appears in ``text`` as whole words; a yes/no gold never does
    (those words say nothing about the evidence).

    >>> answer_in_text(["Chief of Protocol"], "She served as Chief of Protocol of the US."), answer_in_text(["yes"], "yes")
    (True, False)
    """
    hay = f" {normalize_answer(text)} "
    return any(g not in ("", "yes", "no") and f" {g} " in hay for g in map(normalize_answer, golds))


def extract_number(text: str) -> float | None:
    """The first number in ``text`` (None when there is none). A range or a choice gives its first
    number (``3 or 4`` -> 3, ``3-4`` -> 3); ``~``, ``about`` and units around it are ignored;
    thousands commas are read (``1,200`` -> 1200); a number inside a word is not one (``gpt4``).

    >>> [extract_number(t) for t in ("3 or 4 steps", "~200 tokens", "about 1,200", "2.5", "-1", "none", "gpt4 says 7")]
    [3.0, 200.0, 1200.0, 2.5, -1.0, None, 7.0]
    >>> extract_number("3-4 steps")
    3.0
    """
    m = _NUMBER.search(text)
    return float(m.group(0).replace(",", "")) if m else None


def predicted_number(completion: Completion) -> float | None:
    """A budget predictor's number: the first number of its ``finish[...]`` answer when the
    completion ends in one, else of the whole text (all assistant turns).

    >>> predicted_number("Thought 1: 2 lookups, then\\nAction 1: Finish[about 5]"), predicted_number("~200 tokens")
    (5.0, 200.0)
    """
    answer = final_answer(completion)
    return extract_number(answer if answer is not None else "\n".join(assistant_texts(completion)))


def graded_number_score(prediction: float | None, gold: float) -> float:
    """12 points for the exact number, 6 within 1, 3 within 2, else 0 (and 0 for no prediction).

    >>> [graded_number_score(p, 5) for p in (5, 4, 6.5, 3, 7.5, 8, None)]
    [12.0, 6.0, 3.0, 3.0, 0.0, 0.0, 0.0]
    """
    if prediction is None or math.isnan(prediction):
        return 0.0
    d = abs(prediction - gold)
    return 12.0 if d == 0 else 6.0 if d <= 1 else 3.0 if d <= 2 else 0.0


# --- TRL reward functions ------------------------------------------------------------------------


def _column(columns: dict[str, Any], name: str, n: int) -> list[Any]:
    """The dataset column a reward needs, one value per completion; a clear error when absent."""
    if name not in columns or columns[name] is None:
        raise ValueError(f"this reward needs the dataset column {name!r}; it has {sorted(columns)}")
    values = list(columns[name])
    if len(values) != n:
        raise ValueError(f"column {name!r} has {len(values)} values for {n} completions")
    return values


def _golds(gold: str | Sequence[str]) -> list[str]:
    return [gold] if isinstance(gold, str) else [str(g) for g in gold]


def exact_match_reward(prompts: list[Any], completions: list[Completion], **columns: Any) -> list[float]:
    """1.0 when the final ``finish[...]`` answer matches the ``answer`` column (or one of its
    aliases) after SQuAD normalisation, else 0.0 (no finish: 0.0).

    >>> exact_match_reward(None, ["Action 1: Finish[the Eiffel Tower]", "Action 1: Search[x]"], answer=["Eiffel Tower"] * 2)
    [1.0, 0.0]
    """
    golds = _column(columns, "answer", len(completions))
    out = []
    for c, g in zip(completions, golds, strict=True):
        a = final_answer(c)
        out.append(qa_scores(a, _golds(g))["em"] if a is not None else 0.0)
    return out


def f1_reward(prompts: list[Any], completions: list[Completion], **columns: Any) -> list[float]:
    """Token F1 of the final ``finish[...]`` answer against the ``answer`` column (best alias).

    >>> [round(r, 3) for r in f1_reward(None, [[{"role": "assistant", "content": "Action: finish[Barack Obama]"}]],
    ...                                 answer=[["Obama"]])]
    [0.667]
    """
    golds = _column(columns, "answer", len(completions))
    out = []
    for c, g in zip(completions, golds, strict=True):
        a = final_answer(c)
        out.append(qa_scores(a, _golds(g))["f1"] if a is not None else 0.0)
    return out


def format_reward(prompts: list[Any], completions: list[Completion], **columns: Any) -> list[float]:
    """The fraction of a completion's steps whose action parses (0.0 for no step).

    >>> format_reward(None, ["Action 1: Search[X]\\nAction 2: I give up", "Action 1: Finish[y]"])
    [0.5, 1.0]
    """
    out = []
    for c in completions:
        acts = actions(c)
        out.append(sum(a.name != "invalid" for a in acts) / len(acts) if acts else 0.0)
    return out


STEP_COST = 0.05
"""Default cost of one step: 20 steps cost as much as one exact answer (1.0) earns."""


def step_cost_reward(prompts: list[Any], completions: list[Completion], step_cost: float = STEP_COST,
                     **columns: Any) -> list[float]:
    """``-step_cost`` per step (each action; a bare text is one step): with a correctness reward,
    the shorter of two correct trajectories wins.

    >>> step_cost_reward(None, ["Action 1: Search[X]\\nAction 2: Finish[y]"], step_cost=0.1)
    [-0.2]
    """
    return [-step_cost * len(actions(c)) for c in completions]


def evidence_recall_reward(prompts: list[Any], completions: list[Completion], **columns: Any) -> list[float]:
    """The share of the question's supporting pages (the ``evidence`` column: titles, or sets of
    titles) that the agent's searches opened (``evidence_recall``), in an episode that ends in an
    answer; 0.0 without one (opening pages and not answering earns nothing).

    >>> evidence_recall_reward(None, ["Action 1: Search[A]\\nObservation 1: A is.\\nAction 2: Finish[x]",
    ...                               "Action 1: Search[A]\\nObservation 1: A is.\\nAction 2: Search[B]"], evidence=[["A", "B"]] * 2)
    [0.5, 0.0]
    """
    golds = _column(columns, "evidence", len(completions))
    return [evidence_recall(opened_pages(c), e or []) if final_answer(c) is not None else 0.0
            for c, e in zip(completions, golds, strict=True)]


def answer_in_observation_reward(prompts: list[Any], completions: list[Completion], **columns: Any) -> list[float]:
    """1.0 when a gold answer (the ``answer`` column, or an alias) appears in an observation the
    agent read, in an episode that ends in an answer; else 0.0 (yes/no golds: always 0.0).

    >>> answer_in_observation_reward(None, ["Action 1: Search[A]\\nObservation 1: A is in Paris.\\nAction 2: Finish[Rome]",
    ...                                     "Action 1: Search[A]\\nObservation 1: A is in Paris."], answer=["Paris"] * 2)
    [1.0, 0.0]
    """
    golds = _column(columns, "answer", len(completions))
    return [float(final_answer(c) is not None and any(answer_in_text(_golds(g), o) for o in observations(c) if o))
            for c, g in zip(completions, golds, strict=True)]


def budget_reward(prompts: list[Any], completions: list[Completion], **columns: Any) -> list[float]:
    """The graded numeric reward of a budget predictor (``graded_number_score``) of
    ``predicted_number(completion)`` against the ``budget`` column (a number or numeric string).

    >>> budget_reward(None, ["3 or 4 steps", "~200 tokens", "no idea", "Action: finish[6]"], budget=[3, 201, 5, "8"])
    [12.0, 6.0, 0.0, 3.0]
    """
    golds = _column(columns, "budget", len(completions))
    return [graded_number_score(predicted_number(c), float(g)) for c, g in zip(completions, golds, strict=True)]


REWARDS = {f.__name__: f for f in (exact_match_reward, f1_reward, format_reward, step_cost_reward, budget_reward,
                                   evidence_recall_reward, answer_in_observation_reward)}
"""The reward functions by name (what a recipe will list)."""
