"""One table of Answer -> Evaluate runs (``reactlab run --agent pipeline`` / ``reactlab eval`` cells)
on the same questions: accuracy with its standard error, the Answer agent alone, the paired
difference of each run to the base run (the first, or ``--base``: per-question differences, their
standard error, z, questions gained / lost), the Evaluate agent's flips, the fallback-extraction
rate, wall time, and how far the final answers score beyond what their letters alone explain
(``demo_report.beyond_letters``: about 0 when a run picks letters by habit and reads nothing of the
questions); then two baselines on the base run's questions: chance, and the letter prior (the most
frequent TRAIN gold letter per option count, from train labels only). Wall time is each run's
``summary.json`` (a resumed run counts its last invocation only).

    .venv/bin/python bench/answer_evaluate_table.py RUN_DIR [RUN_DIR ...] [--base RUN_DIR]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from reactlab.demo_report import beyond_letters, paired, prior_letters, run_answers, run_scores
from reactlab.report import duration
from reactlab.tasks import make_task


def cell(s: dict, key: str) -> str:
    """A metric of a summary with its standard error, or ``-`` when the run has none."""
    return f"{s[key]:.3f} ± {s['stderr'][key]:.3f}" if key in s else "-"


def letter_rows(run: Path, n_options: dict[str, int]) -> list[tuple[int, str, str]]:
    """``(n_options, final answer, gold)`` per question of a run (``n_options``: id -> its count)."""
    return [(n_options[i], a, g) for i, (a, g) in run_answers(run).items()]


def baselines(base: Path, task_name: str) -> list[str]:
    """Chance and the train-label prior on ``base``'s questions (a task whose examples carry
    ``meta["options"]``)."""
    task = make_task(task_name)
    if not {"all", "train"} <= set(task.split_files):
        return [f"- no prior baseline: {task_name} has no train split"]
    ids = set(run_scores(base))
    evals = [e for e in task.examples("all") if e.id in ids]
    prior = prior_letters([(len(e.meta["options"]), e.answer) for e in task.examples("train")])
    hits = [float(prior.get(len(e.meta["options"])) == e.answer) for e in evals]
    n = len(hits)
    acc = sum(hits) / n
    se = (sum((h - acc) ** 2 for h in hits) / (n - 1) / n) ** 0.5 if n > 1 else 0.0
    chance = sum(1 / len(e.meta["options"]) for e in evals) / n
    letters = ", ".join(f"{k} options: {x}" for k, x in prior.items())
    return [f"- chance (uniform guess) on these {n} questions: {chance:.3f}",
            f"- prior (most frequent train letter per option count; {letters}): {acc:.3f} ± {se:.3f}"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--base", type=Path, help="the run the others are paired with (default: the first)")
    args = ap.parse_args()
    base = args.base or args.runs[0]
    base_scores = run_scores(base)
    print("| run | method | n | accuracy | Answer alone | Δ vs base ± paired stderr (z) | gained / lost "
          "| right->wrong | wrong->right | fallback | beyond letters (z) | wall time |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    task = json.loads((base / "summary.json").read_text())["run"].get("task", "")
    n_options = {e.id: len(e.meta["options"]) for e in make_task(task).examples("all")}
    for run in args.runs:
        s = json.loads((run / "summary.json").read_text())
        d = paired(run_scores(run), base_scores)
        b = beyond_letters(letter_rows(run, n_options))
        delta = ("- | -" if run == base else
                 f"{100 * d['diff']:+.1f} ± {100 * d['stderr']:.1f} pts ({d['z']:+.2f}) | {d['gained']} / {d['lost']}")
        print(f"| {run} | {s['run'].get('method', '')} | {s['n']} | {cell(s, 'accuracy')} | "
              f"{cell(s, 'candidate_accuracy')} | {delta} | {cell(s, 'right_to_wrong')} | "
              f"{cell(s, 'wrong_to_right')} | {s.get('fallback', 0):.3f} | {100 * b['diff']:+.1f} pts ({b['z']:+.2f}) | "
              f"{duration(s.get('wall_s', 0.0))} |")
    print()
    print("\n".join(baselines(base, task)))


if __name__ == "__main__":
    main()
