"""bench/answer_evaluate_table.py: paired differences to the base run, and the chance and
train-label prior baselines on the base run's questions."""

import sys

from reactlab.config import RunConfig
from reactlab.demo_report import prior_letters
from reactlab.llm.scripted import ScriptedLLM
from reactlab.runner import run_from_config
from reactlab.tasks import make_task

TASK = make_task("logic_mcq")
GOLD = {e.question: e.answer for e in TASK.examples("eval", limit=4)}


def _run(out, right):
    """An Answer-alone run on 4 eval questions whose answers are right on the questions in ``right``."""
    def reply(p):
        q = next(k for k in GOLD if p[-1]["content"].startswith(k))
        return "答案是:" + (GOLD[q] if q in right else "BA"[GOLD[q] == "B"])

    run_from_config(RunConfig(out=str(out), task="logic_mcq", agent="pipeline", method="answer", limit=4),
                    llms={"default": ScriptedLLM(reply)}, progress=False)
    return out


def test_paired_differences_and_baselines(load_bench, tmp_path, capsys, monkeypatch):
    qs = list(GOLD)
    base = _run(tmp_path / "base", set(qs[:2]))
    other = _run(tmp_path / "other", set(qs[1:]))
    monkeypatch.setattr(sys, "argv", ["answer_evaluate_table.py", str(base), str(other)])
    load_bench("answer_evaluate_table").main()
    out = capsys.readouterr().out
    row = next(x for x in out.splitlines() if x.startswith(f"| {other} |"))
    # base right on q0, q1; other on q1, q2, q3: +1/4 mean, gained 2 (q2, q3), lost 1 (q0)
    assert "| 0.750 ± 0.250 |" in row and "+25.0 ±" in row and "| 2 / 1 |" in row
    assert f"| {base} | answer | 4 | 0.500 ± 0.289 | 0.500 ± 0.289 | - | - |" in out
    prior = prior_letters([(len(e.meta["options"]), e.answer) for e in TASK.examples("train")])
    exs = TASK.examples("eval", limit=4)
    acc = sum(prior[len(e.meta["options"])] == e.answer for e in exs) / 4
    assert "prior (most frequent train letter per option count; " in out and f": {acc:.3f} ±" in out
    assert f"chance (uniform guess) on these 4 questions: {sum(1 / len(e.meta['options']) for e in exs) / 4:.3f}" in out
