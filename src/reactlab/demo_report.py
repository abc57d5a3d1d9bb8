"""The demo's ``report.md``: one row per arm (from each run's ``summary.json``), the EM deltas, the
data and training lines, and the ``reactlab`` commands that reproduce every stage. The logic_mcq
demo's report (``render_mcq_report``) adds the letter-prior baseline (train labels only) and paired
differences to the base pipeline, question by question."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from reactlab.report import Arm, Summary, arms_table, duration
from reactlab.train.recipes import SFTRecipe
from reactlab.train.record import TRAINING_FILE

ROLES = ("answer", "evaluate")
"""The logic_mcq demo's roles, each with its own adapter."""
ARMS = (("evaluate-trained", "trained Evaluate on the base Answer"),
        ("answer-trained", "trained Answer alone"),
        ("both-trained", "both roles trained"))
"""The logic_mcq demo's arms after the base pipeline: (stage, what the report calls it)."""

__all__ = ["paired", "prior_letters", "render_mcq_report", "render_report", "run_scores", "table_rows"]


def table_rows(out: Path, model: str, arms: Sequence[tuple[str, str]]) -> list[Arm]:
    """One row per arm (``(stage, method)``, the stage's run in ``out/stage``), read from its run's
    ``summary.json`` (never recomputed)."""
    label = {"finetuned": " + LoRA adapter", "grpo-finetuned": " + LoRA adapter (SFT + GRPO)"}
    return [Arm(stage, out / stage, model + label.get(stage, ""), method, Summary.read(out / stage))
            for stage, method in arms]


def render_report(out: Path, model: str, rows: list[Arm], cfg: SFTRecipe, commands: Sequence[str],
                  grpo: bool = False) -> str:
    """``report.md`` of the demo in ``out``: the arms table, the EM delta, the data and training
    lines (``grpo``: and the GRPO stage's), the ``commands`` that reproduce it."""
    lines = [f"# The FireAct loop in miniature: {model}", "", *arms_table(rows)]
    base, tuned = (r.summary for r in rows[:2])
    lines += ["", f"**ΔEM (fine-tuned − baseline): {100 * (tuned.main - base.main):+.1f} points** "
                  f"({base.main:.3f} → {tuned.main:.3f} on the same {base.n} questions)."]
    if len(rows) > 2:
        rl = rows[2].summary
        lines.append(f"**ΔEM (SFT + GRPO − SFT): {100 * (rl.main - tuned.main):+.1f} points** "
                     f"({tuned.main:.3f} → {rl.main:.3f}).")
    lines.append("")
    stats = json.loads((out / "data" / "stats.json").read_text())
    rows_by: dict[str, int] = {}
    for part in stats["rows_by_source"].values():
        for k, v in part.items():
            rows_by[k] = rows_by.get(k, 0) + v
    tokens = stats.get("tokens", {})
    dropped = stats.get("dropped", {})
    lines.append(f"- **Data** (`data/`): {stats['rows']['train']} train + {stats['rows']['val']} val rows "
                 f"({', '.join(f'{k}: {v}' for k, v in rows_by.items())}); "
                 + (f"{tokens['total']:,} tokens (mean {tokens['mean']}, max {tokens['max']}); " if tokens else "")
                 + f"{dropped.get('eval_overlap', 0):,} trajectories dropped as evaluation questions, "
                 f"{dropped.get('max_rows', 0):,} left out by the row cap.")
    info = json.loads((out / "adapter" / TRAINING_FILE).read_text())
    res = info["result"]
    loss = f"{res['train_loss']:.3f}" if res.get("train_loss") is not None else "n/a"
    eval_loss = f", eval loss {res['eval_loss']:.3f}" if res.get("eval_loss") is not None else ""
    tps = f", {res['tokens_per_s']} tokens/s" if res.get("tokens_per_s") else ""
    lines.append(f"- **Training** (`adapter/`): LoRA r={cfg.lora.r} on {info['device']}, {res['steps']} updates "
                 f"over {res['extra'].get('train_rows', '?')} rows, {duration(res['wall_s'])} "
                 f"({res['train_tokens']:,} tokens{tps}); final train loss {loss}{eval_loss}; "
                 "loss curve: [adapter/loss.png](adapter/loss.png)"
                 + (" (resumed from a checkpoint: the time is the resumed part's)" if res["extra"].get("resumed") else "")
                 + ".")
    if grpo:
        lines.append(_grpo_line(out))
    lines.append("- Wall times come from each run's `summary.json` (`wall_s`): a resumed run counts its last "
                 "invocation only.")
    lines += ["", "## Reproduce", "", "```bash", *commands, "```", ""]
    return "\n".join(lines)


def _grpo_line(out: Path) -> str:
    info = json.loads((out / "grpo" / TRAINING_FILE).read_text())
    res, recipe = info["result"], info.get("recipe", {})
    rewards = res["extra"].get("rewards", [])
    curve = (f"mean episode reward {rewards[0]['reward']:.3f} (first update) → {rewards[-1]['reward']:.3f} (last)"
             if rewards else "no reward logged")
    stopped = " (stopped by the time budget)" if res["extra"].get("stopped_by_time") else ""
    return (f"- **GRPO** (`grpo/`): from the SFT adapter, {res['steps']} updates of {recipe.get('num_generations')} "
            f"episodes (one question each) in {duration(res['wall_s'])}{stopped}; {curve}; "
            "curves: [grpo/reward.png](grpo/reward.png), [grpo/loss.png](grpo/loss.png).")


# --- the logic_mcq demo ----------------------------------------------------------------------------


def prior_letters(golds: Sequence[tuple[int, str]]) -> dict[int, str]:
    """The most frequent gold letter per option count, from ``(n_options, gold)`` pairs of TRAIN
    questions (ties: the earlier letter): the baseline a role that learned only the prior reaches.

    >>> prior_letters([(2, "B"), (2, "A"), (2, "B"), (4, "C"), (4, "A")])
    {2: 'B', 4: 'A'}
    """
    by: dict[int, Counter] = {}
    for n, gold in golds:
        by.setdefault(n, Counter())[gold] += 1
    return {n: min(c, key=lambda x: (-c[x], x)) for n, c in sorted(by.items())}


def paired(arm: Mapping[str, float], base: Mapping[str, float]) -> dict[str, float]:
    """``arm`` - ``base`` over the questions both scored (id -> 0/1): the mean difference, its
    paired standard error (sd of the per-question differences / sqrt n), z, and the questions
    gained (right only in ``arm``) and lost.

    >>> d = paired({"a": 1, "b": 1, "c": 0, "d": 1}, {"a": 0, "b": 1, "c": 1, "d": 0})
    >>> d["diff"], d["gained"], d["lost"], round(d["stderr"], 3)
    (0.25, 2, 1, 0.479)
    """
    ids = sorted(set(arm) & set(base))
    ds = [arm[i] - base[i] for i in ids]
    n = len(ds)
    mean = sum(ds) / n if n else 0.0
    var = sum((d - mean) ** 2 for d in ds) / (n - 1) if n > 1 else 0.0
    se = math.sqrt(var / n) if n else 0.0
    return {"n": n, "diff": mean, "stderr": se, "z": mean / se if se else 0.0,
            "gained": sum(d > 0 for d in ds), "lost": sum(d < 0 for d in ds)}


def beyond_letters(answers: Sequence[tuple[int, str, str]]) -> dict[str, float]:
    """How far ``(n_options, answer, gold)`` rows score above what their letters alone explain:
    each row's hit minus the chance that a letter drawn from the other rows' answers of the same
    option count is its gold one (leave-one-out), averaged, with its standard error. About 0 when
    the answers carry nothing of the question (a model that picks letters by habit, the prior's
    constant included); the accuracy that reading the questions adds.

    >>> round(beyond_letters([(2, "A", "A"), (2, "B", "B"), (2, "A", "A"), (2, "B", "B")])["diff"], 3)
    0.667
    >>> beyond_letters([(2, "B", "A"), (2, "B", "B"), (2, "B", "A"), (2, "B", "B")])["diff"]
    0.0
    """
    by: dict[int, Counter] = {}
    for n, answer, _ in answers:
        by.setdefault(n, Counter())[answer] += 1
    ds = []
    for n, answer, gold in answers:
        others = by[n].copy()
        others[answer] -= 1
        total = sum(others.values())
        ds.append(float(answer == gold) - (others[gold] / total if total else 0.0))
    mean, se = _mean_se(ds)
    return {"n": len(ds), "diff": mean, "stderr": se, "z": mean / se if se else 0.0}


def run_answers(run: Path, candidate: bool = False) -> dict[str, tuple[str, str]]:
    """id -> (the run's final letter, or with ``candidate`` the Answer agent's; the gold letter),
    read from ``trajectories.jsonl``."""
    out: dict[str, tuple[str, str]] = {}
    for line in (run / "trajectories.jsonl").read_text(encoding="utf-8").splitlines():
        t = json.loads(line)
        letter = t["answer"]
        if candidate:
            letter = next((c["answer"] for c in t.get("children", []) if c.get("agent") == "answer"), "")
        out[t["id"]] = (str(letter).strip().upper(), t["gold"])
    return out


def hits(answers: dict[str, tuple[str, str]]) -> dict[str, float]:
    """id -> 1.0 where ``run_answers``' letter is the gold one, else 0.0."""
    return {i: float(a == g) for i, (a, g) in answers.items()}


def run_scores(run: Path, candidate: bool = False) -> dict[str, float]:
    """id -> 1.0 when the run's final letter (``candidate``: the Answer agent's) is the gold one."""
    return hits(run_answers(run, candidate))


def _mean_se(xs: Sequence[float]) -> tuple[float, float]:
    n = len(xs)
    m = sum(xs) / n if n else 0.0
    return m, (math.sqrt(sum((x - m) ** 2 for x in xs) / (n - 1) / n) if n > 1 else 0.0)


PRIOR_SPLIT = {"logic_mcq": "train", "mmlu": "val"}
"""Where each task's prior baseline reads its labels: never the evaluation split (MMLU has no train
split; its validation split is disjoint from the test questions the arms run on)."""


def mcq_arms(out: Path, arms: Sequence[tuple[str, str]], task_name: str = "logic_mcq",
             prefix: str = "") -> list[dict[str, Any]]:
    """The logic_mcq demo's table rows: prior baseline, chance, base pipeline, base Answer alone,
    then ``arms`` (``(stage, label)``), each with accuracy, its paired difference to the base and
    how far it scores beyond its letters (``beyond_letters``). ``prefix``: the stage directories'
    (``mmlu-`` for the transfer arms on ``task_name``)."""
    from reactlab.tasks import make_task

    task = make_task(task_name)
    base_answers = run_answers(out / f"{prefix}base")
    base = hits(base_answers)
    evals = [e for e in task.examples("eval") if e.id in base]
    split = PRIOR_SPLIT[task_name]
    prior = prior_letters([(len(e.meta["options"]), e.answer) for e in task.examples(split)])
    n_options = {e.id: len(e.meta["options"]) for e in evals}
    prior_answers = {e.id: (prior.get(len(e.meta["options"]), ""), e.answer) for e in evals}
    chance = sum(1 / len(e.meta["options"]) for e in evals) / len(evals)
    rows: list[dict[str, Any]] = [
        {"arm": f"prior (most frequent {split} letter per option count: "
                + ", ".join(f"{n}:{x}" for n, x in prior.items()) + ")", "answers": prior_answers},
        {"arm": "chance (uniform guess)", "acc": (chance, 0.0)},
        {"arm": "base pipeline (Answer -> Evaluate)", "answers": base_answers, "stage": f"{prefix}base"},
        {"arm": "base Answer alone (the base pipeline's candidates)", "answers": run_answers(out / f"{prefix}base", True)},
    ]
    rows += [{"arm": label, "answers": run_answers(out / f"{prefix}{stage}"), "stage": f"{prefix}{stage}"}
             for stage, label in arms]
    for r in rows:
        if "answers" in r:
            r["scores"] = hits(r["answers"])
            r["acc"] = _mean_se(list(r["scores"].values()))
            r["paired"] = None if r.get("stage") == f"{prefix}base" else paired(r["scores"], base)
            r["beyond"] = beyond_letters([(n_options[i], a, g) for i, (a, g) in r["answers"].items()])
        if "stage" in r:
            r["summary"] = Summary.read(out / r["stage"])
    return rows


def _verdict(rows: Sequence[dict[str, Any]]) -> str:
    """The line under a table: both roles trained against the base pipeline and the prior."""
    both, prior = rows[-1], rows[0]
    p = both["paired"]
    return (f"**Both roles trained − base pipeline: {100 * p['diff']:+.1f} ± {100 * p['stderr']:.1f} points** "
            f"(paired, " + (f"z = {p['z']:+.2f}" if p["stderr"] else "no z: every difference equal")
            + f"; {p['gained']} questions gained, {p['lost']} lost); both trained "
            f"{both['acc'][0]:.3f} vs the prior baseline {prior['acc'][0]:.3f}.")


def mcq_table(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Markdown lines of ``mcq_arms`` rows."""
    lines = ["| arm | n | accuracy ± stderr | Δ vs base pipeline ± paired stderr (z) | gained / lost "
             "| beyond letters (z) | Evaluate right→wrong / wrong→right | fallback | wall time |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        acc, se = r["acc"]
        p, s = r.get("paired"), r.get("summary")
        cells = [r["arm"], str(len(r["scores"])) if "scores" in r else "-", f"{acc:.3f} ± {se:.3f}",
                 f"{100 * p['diff']:+.1f} ± {100 * p['stderr']:.1f} pts" + (f" ({p['z']:+.2f})" if p["stderr"] else "")
                 if p else "-",
                 f"{p['gained']} / {p['lost']}" if p else "-",
                 f"{100 * b['diff']:+.1f} pts ({b['z']:+.2f})" if (b := r.get("beyond")) else "-",
                 f"{s.metrics['right_to_wrong']:.3f} / {s.metrics['wrong_to_right']:.3f}"
                 if s and "right_to_wrong" in s.metrics else "-",
                 f"{s.metrics.get('fallback', 0.0):.3f}" if s else "-", duration(s.wall_s) if s else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def render_mcq_report(out: Path, model: str, commands: Sequence[str], transfer: str | None = None) -> str:
    """``report.md`` of the logic_mcq demo in ``out``: the arms, the role data yields, training;
    ``transfer``: the task of the transfer arms (``<transfer>-<stage>`` directories), a second table."""

    rows = mcq_arms(out, ARMS)
    lines = [f"# Answer -> Evaluate without a teacher: {model} on logic_mcq", "", *mcq_table(rows), "",
             _verdict(rows), ""]
    if transfer:
        moved = mcq_arms(out, ARMS, transfer, f"{transfer}-")
        lines += [f"## The same roles on {transfer} ({len(moved[2]['scores'])} eval questions, English prompts)", "",
                  "Trained on logic_mcq rows only: whether the roles transfer.", "", *mcq_table(moved), "",
                  _verdict(moved), ""]
    samples = Summary.read(out / "samples")
    k = samples.run.get("settings", {}).get("answer_samples", 1)
    for role in ROLES:
        stats = json.loads((out / f"data-{role}" / "stats.json").read_text())
        counts, dropped = stats.get("role_counts", {}), stats.get("dropped", {})
        kept = sum(stats["rows"].values())
        replies = counts.get("replies", 0)
        yield_ = f"{kept / replies:.1%}" if replies else "n/a"
        drops = ", ".join(f"{x}: {v}" for x, v in sorted(dropped.items()))
        if role == "answer":
            lines.append(f"- **Answer rows** (`data-answer/`, rejection sampling): {samples.n} train questions x "
                         f"k={k} = {replies} replies; {kept} rows kept (yield {yield_}); dropped: {drops or 'none'}.")
        else:
            mix = ", ".join(f"{x}: {v}" for x, v in sorted(counts.items()) if x.startswith("options="))
            lines.append(f"- **Evaluate rows** (`data-evaluate/`, target `答案是:<gold>`): {replies} replies -> "
                         f"{kept} rows ({counts.get('keeps', 0)} keep a right candidate, "
                         f"{counts.get('corrections', 0)} correct a wrong one, {counts.get('no_candidate', 0)} "
                         f"answer with no candidate); balanced per option count "
                         f"(each gold letter as many rows as its option count's rarest): {mix}; "
                         f"dropped: {drops or 'none'}.")
    for role in ROLES:
        info = json.loads((out / f"adapter-{role}" / TRAINING_FILE).read_text())
        res = info["result"]
        loss = f"{res['train_loss']:.3f}" if res.get("train_loss") is not None else "n/a"
        lines.append(f"- **Training, {role}** (`adapter-{role}/`): {res['steps']} updates over "
                     f"{res['extra'].get('train_rows', '?')} rows on {info['device']}, {duration(res['wall_s'])}; "
                     f"final train loss {loss}.")
    lines += ["- Paired differences are per question against the base pipeline; the prior baseline uses "
              "train labels only. Wall times: each run's `summary.json` (a resumed run counts its last "
              "invocation only).", "", "## Reproduce", "", "```bash", *commands, "```", ""]
    return "\n".join(lines)
