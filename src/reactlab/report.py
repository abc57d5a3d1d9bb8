"""Typed summaries of runs and the tables made from them.

``Summary`` is what a run's ``summary.json`` holds, as a record: ``Summary.of(trajectories)``
computes it (the runner writes it), ``Summary.read(path)`` reads it back, ``format()`` is the few
lines ``reactlab run`` prints. ``summary.json`` keeps its flat layout (each metric's mean at the top
level, ``stderr`` beside them) so that other tools read it without us.

``Arm`` is one row of a comparison table (a run with a label and a method); ``arms_table`` renders
arms as markdown (``reactlab demo``'s report.md leads with it).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reactlab.tasks.metrics import aggregate

_FIXED = ("n", "stderr", "by_type", "avg_steps", "invalid_action_rate", "status", "tokens_per_question",
          "episode_wall_s", "wall_s", "run", "main_metric", "metrics", "first_error", "macro", "errors")


MAX_TYPES_SHOWN = 12
"""``format`` lists the question types up to this many (MMLU's 57 subjects: the count and macro)."""


@dataclass
class Summary:
    """A run's aggregate. ``metrics``: each metric's mean; ``stderr``: its standard error;
    ``main_metric``: the task's headline metric; ``by_type``: per question type, each metric's mean
    and ``n``; ``status``: episodes per status; ``tokens_per_question``: prompt + completion tokens;
    ``episode_wall_s``: the episodes' own wall times added up; ``wall_s``: this invocation's wall
    time (a resumed run counts its last invocation only); ``run``: the run's identity (``run.json``);
    ``first_error``: the error of the first episode that failed, if any; ``errors``: the error log's
    records (``meta["errors"]`` of the episodes, see ``runner.ERRORS_FILE``) by ``agent/kind``."""

    n: int
    metrics: dict[str, float]
    stderr: dict[str, float]
    main_metric: str = "em"
    by_type: dict[str, dict[str, float]] = field(default_factory=dict)
    avg_steps: float = 0.0
    invalid_action_rate: float = 0.0
    status: dict[str, int] = field(default_factory=dict)
    tokens_per_question: float = 0.0
    episode_wall_s: float = 0.0
    wall_s: float = 0.0
    run: dict[str, Any] = field(default_factory=dict)
    first_error: str | None = None
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def macro(self) -> dict[str, float]:
        """Each metric's mean over question types (MMLU's macro accuracy over subjects); empty
        with fewer than two types."""
        types = [v for v in self.by_type.values()]
        if len(types) < 2:
            return {}
        return {k: sum(t[k] for t in types) / len(types) for k in self.metrics if all(k in t for t in types)}

    @property
    def all_failed(self) -> bool:
        """Every episode ended in ``error`` (e.g. every model call was refused)."""
        return self.n > 0 and self.status.get("error", 0) == self.n

    @classmethod
    def of(
        cls,
        trajs: Sequence[Mapping[str, Any]],
        metrics: Sequence[str] | None = None,
        main_metric: str = "em",
        wall_s: float = 0.0,
        run: dict[str, Any] | None = None,
    ) -> Summary:
        """Aggregate trajectory records (dicts as in ``trajectories.jsonl``): each of ``metrics``
        (default: every score key seen) as mean + stderr, by question type, steps, statuses, tokens."""
        scores = {k: v for k, v in aggregate([t.get("scores", {}) for t in trajs], metrics).items()
                  if v["n"] or k == main_metric}  # a metric no episode has (accuracy on covered claims) is left out
        by_type: dict[str, dict[str, float]] = {}
        for typ in sorted({t.get("type", "") for t in trajs}):
            sub = [t.get("scores", {}) for t in trajs if t.get("type", "") == typ]
            by_type[typ or "?"] = {k: v["mean"] for k, v in aggregate(sub, metrics).items() if v["n"]} | {"n": len(sub)}
        n_steps = [len(t.get("steps", [])) for t in trajs]
        actions = [s["action"]["name"] for t in trajs for s in t.get("steps", [])]
        tokens = [t.get("usage", {}).get("prompt_tokens", 0) + t.get("usage", {}).get("completion_tokens", 0)
                  for t in trajs]
        n = len(trajs)
        return cls(
            n=n,
            metrics={k: v["mean"] for k, v in scores.items()},
            stderr={k: v["stderr"] for k, v in scores.items()},
            main_metric=main_metric,
            by_type=by_type,
            avg_steps=sum(n_steps) / n if n else 0.0,
            invalid_action_rate=(actions.count("invalid") / len(actions)) if actions else 0.0,
            status=dict(Counter(t.get("status", "?") for t in trajs)),
            tokens_per_question=sum(tokens) / n if n else 0.0,
            episode_wall_s=sum(t.get("wall_s", 0.0) for t in trajs),
            wall_s=wall_s,
            run=dict(run or {}),
            first_error=next((t.get("error") for t in trajs if t.get("status") == "error"), None),
            errors=dict(sorted(Counter(f"{e.get('agent', '?')}/{e.get('kind', '?')}" for t in trajs
                                       for e in t.get("meta", {}).get("errors", [])).items())),
        )

    def to_dict(self) -> dict[str, Any]:
        """The ``summary.json`` layout: ``n``, each metric's mean at the top level, then the rest."""
        return {
            "n": self.n, **self.metrics, "stderr": dict(self.stderr), "main_metric": self.main_metric,
            "by_type": self.by_type, "avg_steps": self.avg_steps, "invalid_action_rate": self.invalid_action_rate,
            "status": self.status, "tokens_per_question": self.tokens_per_question,
            "episode_wall_s": self.episode_wall_s, "wall_s": self.wall_s, "run": self.run,
            "first_error": self.first_error, "macro": self.macro, **({"errors": self.errors} if self.errors else {}),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Summary:
        """A ``summary.json`` mapping as a record (metrics are the top-level keys with a stderr)."""
        stderr = dict(d.get("stderr", {}))
        return cls(
            n=int(d["n"]),
            metrics={k: float(d[k]) for k in stderr if k in d and k not in _FIXED},
            stderr=stderr,
            main_metric=d.get("main_metric", "em"),
            by_type=dict(d.get("by_type", {})),
            avg_steps=float(d.get("avg_steps", 0.0)),
            invalid_action_rate=float(d.get("invalid_action_rate", 0.0)),
            status=dict(d.get("status", {})),
            tokens_per_question=float(d.get("tokens_per_question", 0.0)),
            episode_wall_s=float(d.get("episode_wall_s", 0.0)),
            wall_s=float(d.get("wall_s", 0.0)),
            run=dict(d.get("run", {})),
            first_error=d.get("first_error"),
            errors=dict(d.get("errors", {})),
        )

    @classmethod
    def read(cls, path: str | Path) -> Summary:
        """``summary.json`` (or a run directory holding one)."""
        p = Path(path)
        return cls.from_dict(json.loads((p / "summary.json" if p.is_dir() else p).read_text()))

    @property
    def main(self) -> float:
        """The main metric's mean (nan when no episode had it)."""
        return self.metrics.get(self.main_metric, float("nan"))

    def format(self) -> str:
        """A few human lines: metrics with stderr, steps, invalid actions, time, by type, statuses.

        >>> print(Summary(2, {"em": 0.5, "f1": 0.75}, {"em": 0.5, "f1": 0.25}, by_type={"bridge": {"em": 0.5, "n": 2}},
        ...               avg_steps=3, status={"finished": 2}, wall_s=1.25).format())
        n=2  EM=0.500 ± 0.500  F1=0.750 ± 0.250  avg_steps=3.00  invalid=0.000  wall=1.2s
        by type: bridge: EM 0.500 (n=2)
        status: finished=2
        """
        main = metric_label(self.main_metric)
        return "\n".join([
            f"n={self.n}  "
            + "  ".join(f"{metric_label(k)}={v:.3f} ± {self.stderr.get(k, 0.0):.3f}" for k, v in self.metrics.items())
            + f"  avg_steps={self.avg_steps:.2f}  invalid={self.invalid_action_rate:.3f}  wall={self.wall_s:.1f}s",
            "by type: " + (", ".join(f"{k}: {main} {v.get(self.main_metric, 0):.3f} (n={v['n']:.0f})"
                                     for k, v in self.by_type.items()) if len(self.by_type) <= MAX_TYPES_SHOWN
                           else f"{len(self.by_type)} types (summary.json: by_type)")
            + (f"; macro {main} {self.macro[self.main_metric]:.3f} over {len(self.by_type)} types"
               if self.main_metric in self.macro else ""),
            "status: " + ", ".join(f"{k}={v}" for k, v in self.status.items()),
            *(["error log (errors.jsonl): " + ", ".join(f"{k}={v}" for k, v in self.errors.items())]
              if self.errors else []),
        ])


def metric_label(name: str) -> str:
    """How a metric is written in tables: short names upper-cased (``em`` -> ``EM``), others as is.

    >>> metric_label("em"), metric_label("accuracy")
    ('EM', 'accuracy')
    """
    return name.upper() if len(name) <= 3 else name


@dataclass
class Arm:
    """One row of a comparison table: a run's summary with what to call it."""

    arm: str
    run: Path
    model: str
    method: str
    summary: Summary

    @property
    def prompt_id(self) -> str:
        return str(self.summary.run.get("prompt_id", ""))


def arms_table(arms: Sequence[Arm]) -> list[str]:
    """Markdown lines: one row per arm with the main metric ± stderr, F1 where the task has it,
    steps, invalid actions, tokens per question and wall time."""
    main = arms[0].summary.main_metric if arms else "em"
    label = metric_label(main)
    has_f1 = any("f1" in a.summary.metrics for a in arms) and main != "f1"
    head = f"| arm | model | method | n | {label} ± stderr |" + (" F1 |" if has_f1 else "")
    lines = [head + " avg steps | invalid-action rate | tokens/question | wall time |",
             "|---|---|---|---:|---:|" + ("---:|" if has_f1 else "") + "---:|---:|---:|---:|"]
    for a in arms:
        s = a.summary
        lines.append(f"| {a.arm} | {a.model} | {a.method} | {s.n} | {s.main:.3f} ± {s.stderr.get(main, 0.0):.3f} |"
                     + (f" {s.metrics.get('f1', 0.0):.3f} |" if has_f1 else "")
                     + f" {s.avg_steps:.2f} | {s.invalid_action_rate:.3f} | {s.tokens_per_question:,.0f} "
                       f"| {duration(s.wall_s)} |")
    return lines


def duration(seconds: float) -> str:
    """
    >>> duration(42.0), duration(330.0)
    ('42 s', '5.5 min')
    """
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"
