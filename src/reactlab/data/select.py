"""Which trajectories become training rows: filters with a reason for every drop (``eval_overlap``
first: no evaluation question ever becomes a row), ``mix`` (weights per source, task or method),
``cap`` (a seeded random subset) and ``split_of`` (train or val by a hash of the question, so a
question never lands on both sides).
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

from reactlab.data.sources import Sample
from reactlab.tasks.metrics import normalize_answer, qa_scores
from reactlab.types import Trajectory

T = TypeVar("T")


@dataclass
class Selection:
    """What to keep. ``purpose``: ``sft`` (correct, finished, deduped), ``preference`` (any finished
    or step-limited trajectory with gold, all kept so pairs can form) or ``prompts`` (questions with
    gold, deduped). ``max_steps=None``: no limit; ``min_f1=None``: only EM = 1 counts as correct.
    ``grounded``: SFT keeps only trajectories whose every step ``is_grounded``."""

    purpose: str = "sft"
    max_steps: int | None = None
    min_f1: float | None = None
    grounded: bool = False


def normalize_question(q: str) -> str:
    """The key questions are compared by: HotpotQA's answer normalisation.

    >>> normalize_question("Who is  the director of 'Ed Wood'?") == normalize_question("who is director of Ed Wood")
    True
    """
    return normalize_answer(q)


def eval_splits() -> list[str]:
    """Every evaluation split of every known task, as ``task:split`` (each task says which of its
    splits are for evaluation).

    >>> eval_splits()  # doctest: +NORMALIZE_WHITESPACE
    ['bamboogle:eval', 'fever:eval', 'fever:dev', 'hotpotqa:eval', 'hotpotqa:paper500', 'logic_mcq:eval', 'mmlu:eval',
     'mmlu:val', 'strategyqa:eval']
    """
    from reactlab.tasks import TASKS, make_task

    return [f"{name}:{s}" for name in sorted(TASKS) for s in make_task(name).eval_splits]


def is_grounded(traj: Trajectory) -> bool:
    """True when every ``search``/``lookup`` argument and the final answer appear, as whole words after
    answer normalisation, in the question or an earlier observation (yes/no answers, and the labels of
    tasks scored by accuracy, always pass).

    Rows that fail teach a step the model could not have derived from its context: a page title it
    never saw (the oracle's gold titles, disambiguated like ``Claudio López (footballer)``) or a web
    query written for Google (FireAct's HotpotQA trajectories); a small model imitating them learns to
    invent titles (docs/demo.md).

    >>> from reactlab.types import Action, Step, Trajectory
    >>> t = Trajectory(id="1", task="hotpotqa", question="Where was Ed Wood born?", gold="Poughkeepsie",
    ...                agent="oracle", prompt_id="", model="", steps=[
    ...     Step(0, "", Action("search", "Ed Wood"), "Edward Davis Wood Jr. was born in Poughkeepsie."),
    ...     Step(1, "", Action("finish", "Poughkeepsie"), "")])
    >>> is_grounded(t)
    True
    >>> t.steps[0].action = Action("search", "Ed Wood (filmmaker)")
    >>> is_grounded(t)
    False
    """
    seen = f" {normalize_answer(traj.question)} "
    free_text = _scorer(traj.task)[0] == "em"
    for step in traj.steps:
        name, arg = step.action.name, f" {normalize_answer(step.action.arg)} "
        copied = name in ("search", "lookup") or (name == "finish" and free_text and arg.strip() not in ("yes", "no"))
        if copied and (not arg.strip() or arg not in seen):
            return False
        seen += f"{normalize_answer(step.observation)} "
    return True


def _qualified(split: str) -> list[tuple[str, str]]:
    """``task:split`` as is; a bare split name means that split of every known task that has it."""
    from reactlab.tasks import TASKS, make_task

    task, sep, name = split.partition(":")
    if sep:
        return [(task, name)]
    found = [(t, split) for t in sorted(TASKS) if split in make_task(t).splits]
    if not found:
        raise ValueError(f"no known task has a split {split!r} (tasks: {', '.join(sorted(TASKS))})")
    return found


def excluded_questions(splits: Sequence[str] | None = None, files: Iterable[str | Path] = ()) -> set[str]:
    """Normalised questions of the task ``splits`` (``task:split`` or a bare split name; default:
    ``eval_splits()``) and of ``files`` (any layout ``hotpotqa.load_file`` reads: official, HF,
    simplified; or trajectory / FireAct files)."""
    from reactlab.tasks import make_task
    from reactlab.tasks.hotpotqa import load_file

    pairs = [p for s in (eval_splits() if splits is None else splits) for p in _qualified(s)]
    out = {normalize_question(e.question) for task, split in pairs for e in make_task(task).examples(split)}
    for f in files:
        out |= _questions_of(Path(f), load_file)
    return out


def _questions_of(path: Path, load_file) -> set[str]:
    from reactlab.data.sources import read_file
    from reactlab.io import DataError, read_records

    where, first = next(iter(read_records(path)), (str(path), {}))
    if "answer" in first and "question" in first and "steps" not in first:
        return {normalize_question(e.question) for e in load_file(path)}
    try:
        return {normalize_question(s.traj.question) for s in read_file(path, "exclude")}
    except DataError as e:
        raise DataError(f"--exclude {e}: expected a HotpotQA file (question, answer) or trajectories") from None


def is_correct(sample: Sample, min_f1: float | None = None) -> bool | None:
    """The task's own check: its main metric is 1 (EM for HotpotQA and Bamboogle, accuracy for
    FEVER, StrategyQA, MMLU), or F1 >= ``min_f1``; None when there is no gold answer to judge by.

    Scores come from the run (``traj.scores``) or, when absent, from the trajectory's task's scorer
    applied to ``gold`` (HotpotQA's EM/F1 for a trajectory of no known task).
    """
    t = sample.traj
    if not t.gold and not t.scores:
        return None
    main, scorer = _scorer(t.task)
    scores = t.scores if main in t.scores else scorer(t)
    if scores.get(main, 0.0) >= 1.0:
        return True
    return min_f1 is not None and scores.get("f1", 0.0) >= min_f1


@cache
def _scorer(task_name: str) -> tuple[str, Any]:
    """``(main metric, trajectory -> scores)`` of a task by name; HotpotQA's EM/F1 for an unknown one."""
    from reactlab.tasks import TASKS, make_task
    from reactlab.types import Example

    if task_name not in TASKS:
        return "em", lambda t: qa_scores(t.answer, t.gold)
    task = make_task(task_name)
    return task.main_metric, lambda t: task.score(Example(id=t.id, question=t.question, answer=t.gold), t.answer)


def drop_reason(sample: Sample, sel: Selection, excluded: set[str]) -> str | None:
    """Why ``sample`` is dropped (module docstring order), or None to keep it (before dedupe)."""
    t = sample.traj
    if normalize_question(t.question) in excluded:
        return "eval_overlap"
    if t.status == "error":
        return "error"
    if not t.steps and sel.purpose != "prompts":
        return "no_steps"
    if sel.purpose == "sft":
        if t.status != "finished" or t.steps[-1].action.name != "finish":
            return "unfinished"
        if is_correct(sample, sel.min_f1) is False:
            return "incorrect"
        if sel.grounded and not is_grounded(t):
            return "ungrounded"
    if sel.max_steps is not None and len(t.steps) > sel.max_steps and sel.purpose != "prompts":
        return "too_many_steps"
    if sel.purpose != "sft" and not t.gold:
        return "no_gold"
    return None


def select(samples: Iterable[Sample], sel: Selection, excluded: set[str]) -> tuple[list[Sample], Counter]:
    """Kept samples in input order and ``Counter`` of drop reasons (see ``drop_reason``)."""
    kept: list[Sample] = []
    dropped: Counter = Counter()
    seen: set[str] = set()
    for s in samples:
        reason = drop_reason(s, sel, excluded)
        key = normalize_question(s.traj.question)
        if reason is None and sel.purpose != "preference":
            reason = "duplicate" if key in seen else None
            seen.add(key)
        if reason:
            dropped[reason] += 1
        else:
            kept.append(s)
    return kept, dropped


def parse_mix(items: Iterable[str]) -> dict[str, float]:
    """``["a=0.5", "fireact:hotpotqa=2"]`` -> ``{"a": 0.5, "fireact:hotpotqa": 2.0}``.

    >>> parse_mix(["a=0.5", "fireact:hotpotqa=2"])
    {'a': 0.5, 'fireact:hotpotqa': 2.0}
    """
    from reactlab.config import split_key_value

    out: dict[str, float] = {}
    for item in items:
        name, w = split_key_value(item, "--mix", last=True)
        try:
            weight = float(w)
        except ValueError:
            weight = -1.0
        if weight < 0:
            raise ValueError(f"--mix {item!r}: expected SOURCE=WEIGHT with a weight >= 0")
        out[name] = weight
    return out


def mix(samples: Sequence[Sample], weights: dict[str, float], seed: int = 0) -> list[Sample]:
    """Scale each source by its weight (default 1): ``round(w * n)`` of its ``n`` samples — a random
    subset for ``w < 1``, whole copies plus a random subset for ``w > 1``. ``task:NAME`` and
    ``method:NAME`` weights scale the samples of that task or method in every source (weights that
    apply to one sample multiply). Deterministic given ``seed``; sources stay in input order and
    each copy keeps its group's order.

    >>> from reactlab.types import Trajectory
    >>> s = [Sample(Trajectory(str(i), "", f"q{i}", "", "", "", ""), "a", "") for i in range(4)]
    >>> [x.traj.id for x in mix(s, {"a": 0.5}, seed=1)], len(mix(s, {"a": 1.5}))
    (['0', '1'], 6)
    """
    names = list(dict.fromkeys(s.source for s in samples))
    kinds = {"task": {s.traj.task for s in samples}, "method": {s.traj.method or "react" for s in samples}}
    unknown = sorted(k for k in weights if k not in names and not (
        k.partition(":")[0] in kinds and k.partition(":")[2] in kinds[k.partition(":")[0]]))
    if unknown:
        raise ValueError(f"--mix names unknown source(s) {unknown}; sources: {names}; tasks: "
                         f"{sorted(kinds['task'])} (task:NAME); methods: {sorted(kinds['method'])} (method:NAME)")
    out: list[Sample] = []
    for name, stream, group in _mix_groups(samples, names):
        w = weights.get(name, 1.0) * weights.get(f"task:{group[0].traj.task}", 1.0) \
            * weights.get(f"method:{group[0].traj.method or 'react'}", 1.0)
        whole, frac = int(w), w - int(w)
        rng = random.Random(f"{seed}:{stream}")  # one stream per group: adding a source changes no other
        extra = sorted(rng.sample(range(len(group)), round(frac * len(group))))
        out += [s for _ in range(whole) for s in group] + [group[i] for i in extra]
    return out


def _mix_groups(samples: Sequence[Sample], names: list[str]) -> list[tuple[str, str, list[Sample]]]:
    """``(source, random stream name, samples)``: by source, then by task and method within a
    source (in order of first appearance); a source of one task and method is one group."""
    out = []
    for name in names:
        mine = [s for s in samples if s.source == name]
        keys = list(dict.fromkeys((s.traj.task, s.traj.method) for s in mine))
        for key in keys:
            stream = name if len(keys) == 1 else f"{name}:{key[0]}:{key[1]}"
            out.append((name, stream, [s for s in mine if (s.traj.task, s.traj.method) == key]))
    return out


def cap(items: Sequence[T], n: int | None, seed: int = 0) -> list[T]:
    """At most ``n`` of ``items``: a random subset drawn with ``seed``, in input order (all of them
    when ``n`` is None or not smaller). Sampling, not the first ``n``: rows come grouped by source,
    so a prefix would be one source only.

    >>> cap(list("abcdef"), 3, seed=0) == cap(list("abcdef"), 3, seed=0), len(cap(list("abcdef"), 3)), cap("ab", 5)
    (True, 3, ['a', 'b'])
    """
    if n is None or len(items) <= n:
        return list(items)
    keep = sorted(random.Random(f"{seed}:cap").sample(range(len(items)), n))
    return [items[i] for i in keep]


def split_of(question: str, val_frac: float) -> str:
    """``"val"`` for a ``val_frac`` share of questions chosen by a hash of the normalised text, else
    ``"train"``; stable across runs, machines and sources.

    >>> split_of("Who?", 0.0), split_of("Who?", 1.0)
    ('train', 'val')
    """
    h = hashlib.sha256(normalize_question(question).encode("utf-8")).digest()
    return "val" if int.from_bytes(h[:8], "big") / 2**64 < val_frac else "train"
