"""Budget labels from our own runs: what a question cost an agent, in steps and generated tokens.

One row per (question, task, agent, method, model); where K runs of a question exist the label is
their lower median (an observed value) and every run's value is kept. A greedy run gives one
deterministic label per question. Every row names its label set: the identity of the run it came
from (``run.json``: task, agent, method, model, prompt, settings; ``label_set_name``), so one
agent configuration is one label set, whichever questions (split) a run asked it. A question of any task's evaluation split is a ``test``
row, never a training one; the rest split by a hash of the question. Token bucket edges default to
the quintiles of the training labels.

``build_budget`` also writes the per-call rows of ``budget.calls`` (``calls/SPLIT.jsonl``) and
each label set's noise ceiling (``noise_ceiling``): the scores of a second labelling of the same
questions (``--repeat`` runs of the same configuration; for sampled runs, one run against the
median of the others; for calls, the same prompt labelled again) against the labels.
"""

from __future__ import annotations

import bisect
import statistics
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
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
    label_set: str = ""

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


def label_rows(samples: Iterable[Sample], excluded: set[str], val_frac: float = 0.2,
               label_set_of: Callable[[Sample], str] = lambda s: "") -> tuple[list[BudgetRow], Counter]:
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
            split="test" if norm in excluded else split_of(first.question, val_frac),
            label_set=",".join(dict.fromkeys(label_set_of(r) for r in runs))))
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


TARGETS = ("steps", "tokens", "call_tokens")
"""What ``build_budget`` labels: episode steps and episode tokens (the same rows), per-call tokens."""


def run_identity(spec: str) -> dict[str, Any] | None:
    """The agent configuration of the run a source spec names (a run directory, or a trajectories
    file beside its ``run.json``): its ``runner.IDENTITY`` fields but ``split`` (which questions
    were asked is no part of who answered); None when it has none."""
    import json

    from reactlab.data.sources import split_name
    from reactlab.runner import IDENTITY, RUN_FILE

    path = Path(split_name(spec)[1])
    run = (path if path.is_dir() else path.parent) / RUN_FILE
    if not run.is_file():
        return None
    try:
        d = json.loads(run.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{run}: not JSON ({e.msg})") from None
    if not isinstance(d, dict):
        raise DataError(f"{run}: not a run record")
    return {k: d.get(k) for k in IDENTITY if k != "split"}


def label_set_name(identity: dict[str, Any] | None) -> str:
    """A label set's name: who answered, greedy or sampled, and a hash of the whole run identity.

    >>> label_set_name({"agent": "react", "method": "react", "model": "smollm2", "prompt_id": "p@1",
    ...                 "settings": {"decoding": {"temperature": 0.0}}})[:32]
    'react/react smollm2 p@1 greedy #'
    >>> label_set_name(None)
    ''
    """
    import hashlib
    import json

    if identity is None:
        return ""
    settings = identity.get("settings") or {}
    temperature = (settings.get("decoding") or {}).get("temperature", 0.0)
    how = "greedy" if not temperature and settings.get("samples", 1) <= 1 else "sampled"
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]
    return f"{identity.get('agent')}/{identity.get('method')} {identity.get('model')} {identity.get('prompt_id')} {how} #{digest}"


def _read(sources: Sequence[str]) -> tuple[list[Sample], dict[int, str], dict[str, Any]]:
    """Every sample of ``sources``, each sample's label set (by ``id``) and the sets' identities."""
    from reactlab.data.sources import load_source

    samples: list[Sample] = []
    names: dict[int, str] = {}
    identities: dict[str, Any] = {}
    for spec in sources:
        identity = run_identity(spec)
        name = label_set_name(identity)
        if name:
            identities[name] = identity
        for smp in load_source(spec):
            samples.append(smp)
            names[id(smp)] = name
    return samples, names, identities


def _pairs_ci(pairs: Sequence[tuple[int, int]], groups: Sequence[Any] | None = None) -> dict[str, Any] | None:
    from reactlab.budget.metrics import score_ci

    if not pairs:
        return None
    return score_ci([a for a, _ in pairs], [b for _, b in pairs], groups)


def noise_ceiling(rows: Sequence[BudgetRow], repeat: Sequence[BudgetRow], edges: Sequence[int],
                  calls: Sequence[Any] = (), call_edges: Sequence[int] = ()) -> dict[str, Any]:
    """Scores of a second labelling against the labels (module docstring), with 95% intervals:
    ``steps`` and ``bucket`` (a ``repeat`` row against the row of its question, else a sampled row's
    first run against the lower median of its others) and ``call_bucket`` (calls with the same
    label set and prompt: the first against the lower median of the others)."""
    from reactlab.data.select import normalize_question

    def key(r: BudgetRow) -> tuple[str, ...]:
        return (normalize_question(r.question), r.task, r.agent, r.method, r.model)

    out: dict[str, Any] = {}
    steps: list[tuple[int, int]] = []
    buckets: list[tuple[int, int]] = []
    if repeat:
        out["how"] = "a repeat labelling of the same questions against the labels"
        by_key = {key(r): r for r in rows}
        for rep in repeat:
            r = by_key.get(key(rep))
            if r is None:
                continue
            steps.append((rep.steps, r.steps))
            if rep.tokens is not None and r.tokens is not None:
                buckets.append((bucket_of(rep.tokens, edges), bucket_of(r.tokens, edges)))
    else:
        out["how"] = "one run of a question against the lower median of its other runs"
        for r in rows:
            if len(r.steps_all) > 1:
                steps.append((r.steps_all[0], statistics.median_low(r.steps_all[1:])))
            if len(r.tokens_all) > 1:
                buckets.append((bucket_of(r.tokens_all[0], edges), bucket_of(statistics.median_low(r.tokens_all[1:]), edges)))
    out["steps"], out["bucket"] = _pairs_ci(steps), _pairs_ci(buckets)
    same: dict[tuple[str, str], list[int]] = {}
    for c in calls:
        same.setdefault((c.label_set, c.prompt), []).append(c.tokens)
    call_pairs = [(bucket_of(v[0], call_edges), bucket_of(statistics.median_low(v[1:]), call_edges))
                  for v in same.values() if len(v) > 1]
    out["call_bucket"] = _pairs_ci(call_pairs)
    return out


def build_budget(sources: Sequence[str], out: str | Path, *, val_frac: float = 0.2, edges: Sequence[int] | None = None,
                 n_buckets: int = DEFAULT_BUCKETS, exclude: Sequence[str] = (), targets: Sequence[str] = TARGETS,
                 repeat: Sequence[str] = (), call_edges: Sequence[int] | None = None) -> dict[str, Any]:
    """Read ``sources`` (any ``reactlab.data.sources`` spec), label, bucket, and write
    ``out/{train,val,test}.jsonl`` (targets ``steps`` / ``tokens``), ``out/calls/*.jsonl`` (target
    ``call_tokens``) and ``out/stats.json`` atomically; return the stats. ``repeat``: runs of the
    same configurations again, read only for the noise ceiling."""
    from reactlab.budget.calls import call_rows, record_rows
    from reactlab.data.recorded import is_recording
    from reactlab.data.select import excluded_questions, normalize_question, split_of
    from reactlab.data.sources import split_name

    if not sources:
        raise ValueError("give at least one --from SOURCE (a run directory, a trajectories file, fireact:NAME)")
    recordings = [s for s in sources if is_recording(s)]
    sources = [s for s in sources if s not in recordings]
    if recordings and "call_tokens" not in targets:
        raise ValueError(f"--from {recordings[0]}: a server recording labels only --target call_tokens")
    if not sources:  # recordings alone: per-call rows only
        targets = [t for t in targets if t == "call_tokens"]
    if not 0 <= val_frac < 1:
        raise ValueError(f"--val-frac must be in [0, 1), not {val_frac}")
    unknown = sorted(set(targets) - set(TARGETS))
    if unknown or not targets:
        raise ValueError(f"--target {', '.join(unknown) or '(none)'}: known targets are {', '.join(TARGETS)}")
    samples, names, identities = _read(sources)
    rep_samples, rep_names, rep_identities = _read(repeat)
    strangers = sorted(set(rep_identities) - set(identities))
    if strangers:
        raise ValueError(f"--repeat: label set {strangers[0]!r} is not one of the --from runs' (a repeat must be the "
                         "same agent configuration)")
    excluded = excluded_questions(files=exclude)
    rows, dropped = label_rows(samples, excluded, val_frac, lambda s: names[id(s)])
    rep_rows, _ = label_rows(rep_samples, excluded, val_frac, lambda s: rep_names[id(s)])
    train_tokens = [r.tokens for r in rows if r.split == "train" and r.tokens is not None]
    if edges is None and not samples:
        edges, rule = [], "none: no runs (server recordings label calls only)"
    elif edges is None:
        edges, rule = quantile_edges(train_tokens, n_buckets), f"quantiles of the training token labels ({n_buckets} buckets)"
    else:
        edges, rule = sorted(set(int(e) for e in edges)), "given"
    assign_buckets(rows, edges)
    out = Path(out)
    episodes = bool({"steps", "tokens"} & set(targets))
    if episodes:
        for split in SPLITS:
            write_jsonl_atomic(out / f"{split}.jsonl", [r.to_dict() for r in rows if r.split == split])
    stats: dict[str, Any] = {
        "sources": list(sources), "recordings": recordings, "repeat": list(repeat), "targets": list(targets),
        "label_sets": identities,
        "runs": len(samples), "dropped": dict(dropped), "val_frac": val_frac,
        "rows": {s: sum(r.split == s for r in rows) for s in SPLITS},
        "edges": list(edges), "edges_rule": rule,
        "buckets": [bucket_range(b, edges) for b in range(len(edges) + 1)],
        "label": "lower median over a question's runs (steps_all / tokens_all keep them); one greedy run: its value",
        "steps": dict(sorted(Counter(r.steps for r in rows if r.split == "train").items())),
        "bucket_counts": dict(sorted(Counter(r.bucket for r in rows if r.split == "train" and r.bucket is not None).items())),
        "steps_spread_mean": (statistics.fmean(r.steps_spread for r in rows if len(r.steps_all) > 1)
                              if any(len(r.steps_all) > 1 for r in rows) else None),
        "run_agreement": run_agreement([r for r in rows if r.split != "test"], edges),
    }
    calls: list[Any] = []
    if "call_tokens" in targets:
        def side(question: str) -> str:
            return "test" if normalize_question(question) in excluded else split_of(question, val_frac)

        calls, call_dropped = call_rows(samples, side, lambda s: names[id(s)])
        for spec in recordings:
            name, directory = split_name(spec)
            more, more_dropped = record_rows(directory, side, name or "server")
            calls += more
            call_dropped += more_dropped
        rep_calls, _ = call_rows(rep_samples, side, lambda s: rep_names[id(s)])
        train_calls = [c.tokens for c in calls if c.split == "train"]
        if call_edges is None and not train_calls:  # e.g. chat-layout or FireAct runs: no call rebuilt
            call_edges, call_rule = [], "none: no training calls"
        elif call_edges is None:
            call_edges = quantile_edges(train_calls, n_buckets)
            call_rule = f"quantiles of the training calls' token labels ({n_buckets} buckets)"
        else:
            call_edges, call_rule = sorted(set(int(e) for e in call_edges)), "given"
        for c in calls:
            c.bucket = bucket_of(c.tokens, call_edges)
        for split in SPLITS:
            write_jsonl_atomic(out / "calls" / f"{split}.jsonl", [c.to_dict() for c in calls if c.split == split])
        stats |= {"calls": {s: sum(c.split == s for c in calls) for s in SPLITS}, "calls_dropped": dict(call_dropped),
                  "call_edges": list(call_edges), "call_edges_rule": call_rule,
                  "call_buckets": [bucket_range(b, call_edges) for b in range(len(call_edges) + 1)],
                  "call_bucket_counts": dict(sorted(Counter(c.bucket for c in calls if c.split == "train").items()))}
        calls = calls + rep_calls
    ceiling = noise_ceiling(rows, rep_rows, edges, calls, stats.get("call_edges", ()))
    stats["noise_ceiling"] = {k: v for k, v in ceiling.items() if v is not None}
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
