"""``reactlab report RUN_DIR... --out report.html``: runs as one self-contained HTML page (no server,
no network: styles, script and data inlined). Tables and SVG charts are rendered here
(``viewer.svg``); the trajectory viewer is one script (``assets/report.js``) over the inlined JSON.
An episode counts as correct when its main metric is at least 0.5. What it shows: docs/usage.md.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape
from importlib import resources
from pathlib import Path
from typing import Any

from reactlab.io import DataError, iter_jsonl, parse_json, reading, write_text_atomic
from reactlab.report import Summary, duration, metric_label
from reactlab.viewer.svg import bar_chart, line_chart

CORRECT_AT = 0.5
SCRIPT_SAFE = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"})
"""JSON inside ``<script>``: no ``<``, ``>``, ``&`` (nothing in the data can open or close a tag or a
comment) nor line separators, each written as its ``\\u`` escape, which JSON.parse reads back."""


@dataclass
class RunData:
    """One run directory as the report sees it: its ``run.json`` (``spec``; empty when absent), its
    summary (``summary.json``, or computed from the trajectories when the run has none yet), its
    trajectory records and, when its model has an adapter with ``training.json``, that record."""

    label: str
    path: Path
    spec: dict[str, Any]
    summary: Summary
    trajectories: list[dict[str, Any]]
    training: dict[str, Any] | None = None
    gold: dict[str, dict[str, Any]] = field(default_factory=dict)


def load_run(path: str | Path, label: str | None = None) -> RunData:
    """Read a run directory (``trajectories.jsonl``; ``run.json`` and ``summary.json`` when there).
    A directory without trajectories or a malformed line is a ``DataError`` naming the file."""
    p = Path(path)
    traj_file = p / "trajectories.jsonl"
    if not p.is_dir():
        raise DataError(f"{p}: not a run directory")
    if not traj_file.is_file():
        raise DataError(f"{p}: no trajectories.jsonl (is it a run directory?)")
    spec = _read_json(p / "run.json") or {}
    trajs = []
    with reading(traj_file):
        for where, rec in iter_jsonl(traj_file):
            if not isinstance(rec, dict) or "id" not in rec or "question" not in rec:
                raise DataError(f"{where}: not a trajectory record (needs 'id' and 'question')")
            trajs.append(rec)
    raw = _read_json(p / "summary.json")
    if raw is not None:
        try:
            summary = Summary.from_dict(raw)
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"{p / 'summary.json'}: not a run summary ({e})") from None
    else:
        summary = Summary.of(trajs, run=spec)
    return RunData(label or p.name, p, spec, summary, trajs, training=_training(spec, p))


def _read_json(path: Path) -> Any:
    if not path.is_file():
        return None
    with reading(path):
        return parse_json(path.read_text(encoding="utf-8"), str(path), whole_file=True)


def _training(spec: dict[str, Any], run_dir: Path) -> dict[str, Any] | None:
    """The ``training.json`` of the run's adapter (``model`` is ``NAME+ADAPTER``), looked up as
    given and relative to the run directory's parent."""
    from reactlab.train.record import TRAINING_FILE

    model = str(spec.get("model", ""))
    if "+" not in model:
        return None
    adapter = Path(model.split("+", 1)[1])
    for base in (adapter, run_dir.parent / adapter, run_dir.parent / adapter.name):
        if (base / TRAINING_FILE).is_file():
            try:
                record = json.loads((base / TRAINING_FILE).read_text())
            except (OSError, json.JSONDecodeError):
                return None
            extra = record.setdefault("result", {}).setdefault("extra", {})
            if not extra.get("log_history"):  # a record from before it kept the history: the last checkpoint's
                extra["log_history"] = _checkpoint_history(base)
            return record
    return None


def _checkpoint_history(adapter: Path) -> list[dict[str, Any]]:
    """The ``log_history`` of the adapter's last Trainer checkpoint (``checkpoint-N/trainer_state.json``)."""
    states = sorted(adapter.glob("checkpoint-*/trainer_state.json"),
                    key=lambda p: int(p.parent.name.rsplit("-", 1)[1]) if p.parent.name.rsplit("-", 1)[1].isdigit() else -1)
    if not states:
        return []
    try:
        return list(json.loads(states[-1].read_text()).get("log_history", []))
    except (OSError, json.JSONDecodeError):
        return []


def gold_facts(spec: dict[str, Any], ids: set[str]) -> dict[str, dict[str, Any]]:
    """Per example id: its other gold answers (``aliases``) and supporting facts (``sf``: ``[title,
    sentence index, sentence text or None]``), read from the run's task and split (or data file).
    Empty when the task or its data cannot be read here (the trajectories still show their gold)."""
    from reactlab.tasks import make_task

    name, split = spec.get("task"), spec.get("split")
    if not name or not split:
        return {}
    try:
        task = make_task(str(name))
        exs = task.examples(split) if split in task.splits else task.examples(split, data=split)
    except (ValueError, OSError, ImportError, AttributeError, TypeError):
        return {}
    out: dict[str, dict[str, Any]] = {}
    for ex in exs:
        if ex.id not in ids:
            continue
        ctx = {t: s for t, s in ex.meta.get("context", [])}
        sf = [[t, i, ctx[t][i] if t in ctx and 0 <= i < len(ctx[t]) else None]
              for t, i in ex.meta.get("supporting_facts", [])]
        titles = ex.meta.get("supporting_titles", [])
        sf += [[t, None, None] for t in titles if t not in {s[0] for s in sf}]
        out[ex.id] = {"al": list(ex.aliases), "sf": sf}
    return out


def _main_score(traj: dict[str, Any], metric: str) -> float | None:
    v = _dict(traj.get("scores")).get(metric)
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


def _episode(traj: dict[str, Any], metric: str) -> dict[str, Any]:
    """A trajectory record in the page's compact form (short keys: the data of 10,000 episodes is
    inlined)."""
    usage = _dict(traj.get("usage"))
    return {
        "id": str(traj["id"]), "s": _text(traj.get("status", "?")), "m": _main_score(traj, metric),
        "a": _text(traj.get("answer", "")), "sc": {str(k): _number(v) for k, v in _dict(traj.get("scores")).items()},
        "t": int(_number(usage.get("prompt_tokens")) + _number(usage.get("completion_tokens"))),
        "w": round(_number(traj.get("wall_s")), 2), "e": None if traj.get("error") is None else _text(traj["error"]),
        "ag": _text(traj.get("agent", "")),
        "st": [[int(_number(s.get("i"), k + 1)), _text(s.get("thought", "")), _action(_dict(s.get("action"))),
                _text(_dict(s.get("action")).get("name", "")), _text(s.get("observation", ""))]
               for k, s in enumerate(_list(traj.get("steps"))) if isinstance(s, dict)],
        "ch": [_episode(c, metric) for c in _list(traj.get("children")) if isinstance(c, dict)],
    }


def _text(v: Any) -> str:
    """Data as text for the page (a record may hold anything where text belongs)."""
    return v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)


def _number(v: Any, default: float = 0.0) -> float:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    return float(v) if ok else default


def _dict(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def _action(a: dict[str, Any]) -> str:
    name, arg = _text(a.get("name", "")), _text(a.get("arg", ""))
    return arg if name == "invalid" else f"{name.capitalize()}[{arg}]"


def payload(runs: Sequence[RunData]) -> dict[str, Any]:
    """What the page's script reads: runs (label, main metric), questions (text, gold, type,
    aliases, supporting facts) once per id, and episodes."""
    questions: dict[str, dict[str, Any]] = {}
    episodes = []
    for r, run in enumerate(runs):
        metric = run.summary.main_metric
        for t in run.trajectories:
            qid = str(t["id"])
            q = questions.setdefault(qid, {"q": _text(t.get("question", "")), "g": _text(t.get("gold", "")),
                                           "ty": _text(t.get("type", ""))})
            if qid in run.gold:
                q.update(run.gold[qid])
            episodes.append({"r": r, **_episode(t, metric)})
    return {
        "runs": [{"label": run.label, "metric": metric_label(run.summary.main_metric),
                  "model": run.spec.get("model", ""), "method": run.spec.get("method", "")} for run in runs],
        "questions": questions, "episodes": episodes, "correctAt": CORRECT_AT,
    }


# --- the static part: tables and charts -------------------------------------------------------------

def summary_table(runs: Sequence[RunData]) -> str:
    metrics = list(dict.fromkeys(k for run in runs for k in run.summary.metrics))
    head = "".join(f"<th>{escape(metric_label(k))} ± stderr</th>" for k in metrics)
    rows = []
    for run in runs:
        s = run.summary
        cells = "".join(
            f'<td class="num">{s.metrics[k]:.3f} ± {s.stderr.get(k, 0.0):.3f}</td>' if k in s.metrics else "<td></td>"
            for k in metrics)
        status = ", ".join(f"{escape(k)} {v}" for k, v in sorted(s.status.items()))
        rows.append(
            f"<tr><td>{escape(run.label)}</td><td>{escape(str(run.spec.get('model', '')))}</td>"
            f"<td>{escape(str(run.spec.get('method', '') or run.spec.get('agent', '')))}</td>"
            f'<td class="num">{s.n}</td>{cells}<td class="num">{s.avg_steps:.2f}</td>'
            f'<td class="num">{s.invalid_action_rate:.3f}</td><td class="num">{s.tokens_per_question:,.0f}</td>'
            f'<td class="num">{duration(s.wall_s or s.episode_wall_s)}</td><td>{status}</td></tr>')
    return ('<table class="summary"><thead><tr><th>run</th><th>model</th><th>method</th><th>n</th>' + head
            + "<th>avg steps</th><th>invalid actions</th><th>tokens / question</th><th>time</th><th>status</th>"
              "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def type_table(runs: Sequence[RunData]) -> str:
    types = list(dict.fromkeys(t for run in runs for t in run.summary.by_type))
    if not types:
        return ""
    head = "".join(f"<th>{escape(run.label)} ({escape(metric_label(run.summary.main_metric))})</th>" for run in runs)
    rows = []
    for typ in types:
        cells = []
        for run in runs:
            d = run.summary.by_type.get(typ)
            cells.append(f'<td class="num">{d.get(run.summary.main_metric, float("nan")):.3f} '
                         f'<span class="n">(n={d.get("n", 0):.0f})</span></td>' if d else "<td></td>")
        rows.append(f"<tr><td>{escape(typ)}</td>{''.join(cells)}</tr>")
    return f'<table class="summary"><thead><tr><th>type</th>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def charts(runs: Sequence[RunData]) -> list[str]:
    """The metric by steps, the tokens histogram and, where there are training records, loss curves."""
    out = []
    labels = [run.label for run in runs]
    max_steps = max((len(t.get("steps", [])) for run in runs for t in run.trajectories), default=0)
    cats = [str(k) for k in range(max_steps + 1)]
    series, notes = [], []
    for run in runs:
        vals: list[float | None] = []
        ns = []
        for k in range(max_steps + 1):
            scores = [m for t in run.trajectories if len(t.get("steps", [])) == k
                      and (m := _main_score(t, run.summary.main_metric)) is not None]
            vals.append(sum(scores) / len(scores) if scores else None)
            ns.append(f"n={len(scores)}" if scores else "")
        series.append((run.label, vals))
        notes.append(ns)
    metric = metric_label(runs[0].summary.main_metric) if runs else "EM"
    if max_steps:
        out.append(bar_chart(cats, series, title=f"{metric} by number of steps", x_label="steps in the episode",
                             y_label=metric, y_max=1.0, notes=notes))
    tokens = [[t.get("usage", {}).get("prompt_tokens", 0) + t.get("usage", {}).get("completion_tokens", 0)
               for t in run.trajectories] for run in runs]
    top = max((v for ts in tokens for v in ts), default=0)
    if top > 0:
        bins = 12
        width = top / bins
        cats = [f"{width * (b + 1) / 1000:.1f}k" if top >= 10_000 else f"{width * (b + 1):.0f}" for b in range(bins)]
        hist = [[sum(1 for v in ts if min(int(v / width), bins - 1) == b) / max(len(ts), 1) for b in range(bins)]
                for ts in tokens]
        out.append(bar_chart(cats, list(zip(labels, hist, strict=True)), title="Tokens per episode (share of episodes)",
                             x_label="prompt + completion tokens (bin upper edge)", y_label="share"))
    from reactlab.train.plots import loss_series

    curves = []
    for run in runs:
        hist_ = (run.training or {}).get("result", {}).get("extra", {}).get("log_history")
        if hist_:
            for name, pts in loss_series(hist_).items():
                if pts:
                    curves.append((f"{run.label} {name}", pts))
    if curves:
        out.append(line_chart(curves, title="Training loss (the runs' adapters)", x_label="optimizer step",
                              y_label="loss"))
    return out


def render(runs: Sequence[RunData], title: str = "reactlab report") -> str:
    """The whole page as one string."""
    assets = resources.files("reactlab.viewer") / "assets"
    css = (assets / "report.css").read_text(encoding="utf-8")
    js = (assets / "report.js").read_text(encoding="utf-8")
    data = json.dumps(payload(runs), ensure_ascii=False, separators=(",", ":")).translate(SCRIPT_SAFE)
    runs_line = " · ".join(f"<code>{escape(str(run.path))}</code>" for run in runs)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title><style>{css}</style></head>
<body>
<header><h1>{escape(title)}</h1><p class="meta">{len(runs)} run(s): {runs_line} · written {time.strftime("%Y-%m-%d %H:%M")}</p></header>
<section id="summary"><h2>Summary</h2>{summary_table(runs)}
<h3>By question type</h3>{type_table(runs)}
<div class="charts">{"".join(charts(runs))}</div></section>
<section id="viewer"><h2>Trajectories</h2>
<div class="filters">
<label>run <select id="f-run"><option value="">all</option></select></label>
<label>result <select id="f-correct"><option value="">all</option><option value="1">correct</option><option value="0">wrong</option></select></label>
<label>status <select id="f-status"><option value="">all</option></select></label>
<label>type <select id="f-type"><option value="">all</option></select></label>
<label>question <input id="f-text" type="search" placeholder="search question text"></label>
<span id="count"></span></div>
<div class="panes"><div class="listpane"><table id="list"><thead><tr><th>run</th><th>question</th><th>type</th><th>status</th><th>score</th><th>steps</th><th>tokens</th></tr></thead><tbody></tbody></table>
<div class="pager"><button id="prev">&larr; previous</button> <span id="page"></span> <button id="next">next &rarr;</button></div></div>
<div id="episode" class="episode"><p class="hint">Open an episode from the list.</p></div></div>
</section>
<script id="data" type="application/json">{data}</script>
<script>{js}</script>
</body></html>
"""


def build_report(run_dirs: Sequence[str | Path], out: str | Path, *, title: str | None = None,
                 labels: Sequence[str] | None = None) -> Path:
    """Read ``run_dirs`` and write the page to ``out`` (atomically); return its path."""
    if not run_dirs:
        raise ValueError("give at least one run directory")
    paths = [Path(d) for d in run_dirs]
    names = list(labels) if labels else _labels(paths)
    if len(names) != len(paths):
        raise ValueError(f"{len(names)} labels for {len(paths)} runs")
    runs = [load_run(p, name) for p, name in zip(paths, names, strict=True)]
    for run in runs:
        run.gold = gold_facts(run.spec, {str(t["id"]) for t in run.trajectories})
    out = Path(out)
    if out.is_dir():
        out = out / "report.html"
    write_text_atomic(out, render(runs, title or "reactlab report"))
    return out


def _labels(paths: Sequence[Path]) -> list[str]:
    """Each run's directory name, with its parent's when two names clash.

    >>> _labels([Path("a/baseline"), Path("b/baseline"), Path("c/ft")])
    ['a/baseline', 'b/baseline', 'ft']
    """
    names = [p.name or str(p) for p in paths]
    return [f"{p.parent.name}/{p.name}" if names.count(n) > 1 else n for p, n in zip(paths, names, strict=True)]
