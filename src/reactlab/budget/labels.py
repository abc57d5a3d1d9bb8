"""Budget labels from our own runs: what a question cost an agent, in steps and generated tokens.

One row per (question, task, agent, method, model); where K runs of a question exist the label is
their lower median (an observed value) and every run's value is kept. A question of any task's
evaluation split is a ``test`` row, never a training one; the rest split by a hash of the question.
Token bucket edges default to the quintiles of the training labels.
"""

from __future__ import annotations

import bisect
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from reactlab.data.sources import Sample
from reactlab.io import DataError, iter_jsonl, require, write_json_atomic, write_jsonl_atomic

SPLITS = ("train", "val", "test")
STATS_FILE = "stats.json"
DEFAULT_BUCKETS = 5


@dataclass
class Question:
    """What a predictor is asked about: the question and who will answer it."""

    question: str
    task: str = ""
    agent: str = "react"
    method: str = "react"
    model: str = ""
    type: str = ""


@dataclass
class BudgetRow(Question):
    """One label row of a budget dataset (module docstring)."""

    steps: int = 0
    tokens: int | None = None
    bucket: int | None = None
    steps_all: list[int] = field(default_factory=list)
    tokens_all: list[int] = field(default_factory=list)
    steps_spread: int = 0
    ids: list[str] = field(default_factory=list)
    source: str = ""
    split: str = "train"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class BudgetData:
    """A budget dataset directory, read: its rows by split and its token bucket ``edges``."""

    rows: dict[str, list[BudgetRow]]
    edges: list[int]
    stats: dict[str, Any] = field(default_factory=dict)


def episode_tokens(sample: Sample) -> int | None:
    """Completion tokens of an episode: the trajectory's usage, else the sum over its steps; None
    when neither counts any (FireAct's rows)."""
    t = sample.traj
    total = t.usage.completion_tokens or sum(s.usage.completion_tokens for s in t.steps)
    return total or None


def quantile_edges(values: Sequence[int], n_buckets: int = DEFAULT_BUCKETS) -> list[int]:
    """Inner edges splitting ``values`` into ``n_buckets`` near-equal groups (the ``k / n_buckets``
    quantiles, rounded up to integers, duplicates dropped).

    >>> quantile_edges(list(range(1, 101)), 4)
    [26, 51, 76]
    >>> quantile_edges([5, 5, 5, 5], 3)
    [5]
    """
    if not values:
        raise ValueError("no token labels to choose bucket edges from (give --buckets EDGES)")
    if n_buckets < 2:
        raise ValueError(f"--n-buckets must be at least 2, not {n_buckets}")
    v = sorted(values)
    edges = [v[min(len(v) - 1, (k * len(v)) // n_buckets)] for k in range(1, n_buckets)]
    return sorted(set(edges))


def bucket_of(tokens: int, edges: Sequence[int]) -> int:
    """The bucket of a token count: ``i`` when ``edges[i-1] <= tokens < edges[i]``.

    >>> [bucket_of(t, [50, 100]) for t in (0, 49, 50, 99, 100, 1000)]
    [0, 0, 1, 1, 2, 2]
    """
    return bisect.bisect_right(edges, tokens)


def bucket_range(bucket: int, edges: Sequence[int]) -> str:
    """A bucket as a token range.

    >>> [bucket_range(b, [50, 100]) for b in (0, 1, 2)]
    ['< 50', '50-99', '>= 100']
    """
    if bucket <= 0:
        return f"< {edges[0]}" if edges else "any"
    if bucket >= len(edges):
        return f">= {edges[-1]}"
    return f"{edges[bucket - 1]}-{edges[bucket] - 1}"


def label_rows(samples: Iterable[Sample], excluded: set[str], val_frac: float = 0.2) -> tuple[list[BudgetRow], Counter]:
    """Group runs by (question, task, agent, method, model) and label each group (module
    docstring); buckets are not set yet (``assign_buckets``). Returns the rows and the drop counts."""
    from reactlab.data.select import normalize_question, split_of

    groups: dict[tuple[str, ...], list[Sample]] = {}
    dropped: Counter = Counter()
    for s in samples:
        t = s.traj
        if t.status in ("error", "unrun"):
            dropped[t.status] += 1
            continue
        if not t.steps:
            dropped["no_steps"] += 1
            continue
        key = (normalize_question(t.question), t.task, t.agent, t.method or "react", t.model)
        groups.setdefault(key, []).append(s)
    rows = []
    for (norm, task, agent, method, model), runs in groups.items():
        first = runs[0].traj
        steps = [len(r.traj.steps) for r in runs]
        tokens = [x for r in runs if (x := episode_tokens(r)) is not None]
        rows.append(BudgetRow(
            question=first.question, task=task, agent=agent, method=method, model=model, type=first.type,
            steps=statistics.median_low(steps), tokens=statistics.median_low(tokens) if tokens else None,
            steps_all=steps, tokens_all=tokens, steps_spread=max(steps) - min(steps),
            ids=[r.traj.id for r in runs], source=",".join(dict.fromkeys(r.source for r in runs)),
            split="test" if norm in excluded else split_of(first.question, val_frac)))
    return rows, dropped


def assign_buckets(rows: list[BudgetRow], edges: Sequence[int]) -> None:
    for r in rows:
        r.bucket = bucket_of(r.tokens, edges) if r.tokens is not None else None


def run_agreement(rows: Sequence[BudgetRow], edges: Sequence[int]) -> dict[str, Any] | None:
    """How well the agent predicts itself: over questions with two or more runs, the share whose
    first run's steps (and token bucket) equal the lower median of its other runs (``exact``) or
    fall within 1 of it (``within1``). A predictor that saw a whole run of the question would
    score this; it bounds what the question text can tell. None when no question has two runs.

    >>> r = BudgetRow("q", steps_all=[2, 3, 3], tokens_all=[50, 70, 90])
    >>> run_agreement([r], [60, 80])["steps"], run_agreement([r], [60, 80])["bucket"]
    ({'exact': 0.0, 'within1': 1.0}, {'exact': 0.0, 'within1': 1.0})
    """
    pairs: dict[str, list[tuple[int, int]]] = {"steps": [], "bucket": []}
    for r in rows:
        if len(r.steps_all) > 1:
            pairs["steps"].append((r.steps_all[0], statistics.median_low(r.steps_all[1:])))
        if len(r.tokens_all) > 1:
            pairs["bucket"].append((bucket_of(r.tokens_all[0], edges),
                                    bucket_of(statistics.median_low(r.tokens_all[1:]), edges)))
    if not pairs["steps"]:
        return None
    out: dict[str, Any] = {"questions": len(pairs["steps"])}
    for target, ps in pairs.items():
        if ps:
            out[target] = {"exact": round(sum(a == b for a, b in ps) / len(ps), 4),
                           "within1": round(sum(abs(a - b) <= 1 for a, b in ps) / len(ps), 4)}
    return out


def build_budget(sources: Sequence[str], out: str | Path, *, val_frac: float = 0.2, edges: Sequence[int] | None = None,
                 n_buckets: int = DEFAULT_BUCKETS, exclude: Sequence[str] = ()) -> dict[str, Any]:
    """Read ``sources`` (any ``reactlab.data.sources`` spec), label, bucket, and write
    ``out/{train,val,test}.jsonl`` and ``out/stats.json`` atomically; return the stats."""
    from reactlab.data.select import excluded_questions
    from reactlab.data.sources import load_source

    if not sources:
        raise ValueError("give at least one --from SOURCE (a run directory, a trajectories file, fireact:NAME)")
    if not 0 <= val_frac < 1:
        raise ValueError(f"--val-frac must be in [0, 1), not {val_frac}")
    samples = [s for spec in sources for s in load_source(spec)]
    rows, dropped = label_rows(samples, excluded_questions(files=exclude), val_frac)
    train_tokens = [r.tokens for r in rows if r.split == "train" and r.tokens is not None]
    if edges is None:
        edges, rule = quantile_edges(train_tokens, n_buckets), f"quantiles of the training token labels ({n_buckets} buckets)"
    else:
        edges, rule = sorted(set(int(e) for e in edges)), "given"
    assign_buckets(rows, edges)
    out = Path(out)
    for split in SPLITS:
        write_jsonl_atomic(out / f"{split}.jsonl", [r.to_dict() for r in rows if r.split == split])
    stats = {
        "sources": list(sources), "runs": len(samples), "dropped": dict(dropped), "val_frac": val_frac,
        "rows": {s: sum(r.split == s for r in rows) for s in SPLITS},
        "edges": list(edges), "edges_rule": rule,
        "buckets": [bucket_range(b, edges) for b in range(len(edges) + 1)],
        "label": "lower median over a question's runs (steps_all / tokens_all keep them)",
        "steps": dict(sorted(Counter(r.steps for r in rows if r.split == "train").items())),
        "bucket_counts": dict(sorted(Counter(r.bucket for r in rows if r.split == "train" and r.bucket is not None).items())),
        "steps_spread_mean": (statistics.fmean(r.steps_spread for r in rows if len(r.steps_all) > 1)
                              if any(len(r.steps_all) > 1 for r in rows) else None),
        "run_agreement": run_agreement([r for r in rows if r.split != "test"], edges),
    }
    write_json_atomic(out / STATS_FILE, stats)
    return stats


def row_from_record(rec: dict[str, Any], where: str) -> BudgetRow:
    """A label row from its JSON record, checked field by field (errors name the field)."""
    require(rec, "question", str, where)
    steps = require(rec, "steps", int, where)
    if steps < 0:
        raise DataError(f"{where}: field 'steps' must be >= 0, not {steps}")
    for key in ("tokens", "bucket"):
        if rec.get(key) is not None and not isinstance(rec[key], int):
            raise DataError(f"{where}: field {key!r} must be an integer or null, not {rec[key]!r}")
    known = set(BudgetRow.__dataclass_fields__)
    unknown = sorted(set(rec) - known)
    if unknown:
        raise DataError(f"{where}: unknown field(s) {unknown}; a budget row has {sorted(known)}")
    return BudgetRow(**rec)


def read_rows(path: str | Path) -> list[BudgetRow]:
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such file (build a budget dataset with `reactlab budget build`)")
    return [row_from_record(rec, where) for where, rec in iter_jsonl(path)]


def load_budget(path: str | Path) -> BudgetData:
    """A ``budget build`` directory: every split's rows (a missing split is empty) and the edges."""
    import json

    root = Path(path)
    stats_path = root / STATS_FILE
    if not stats_path.is_file():
        raise FileNotFoundError(f"{stats_path}: no such file (is {root} a `reactlab budget build --out` directory?)")
    stats = json.loads(stats_path.read_text(encoding="utf-8"))
    edges = stats.get("edges")
    if not isinstance(edges, list) or not all(isinstance(e, int) for e in edges):
        raise DataError(f"{stats_path}: field 'edges' must be a list of integers")
    rows = {s: read_rows(root / f"{s}.jsonl") if (root / f"{s}.jsonl").exists() else [] for s in SPLITS}
    return BudgetData(rows=rows, edges=edges, stats=stats)
