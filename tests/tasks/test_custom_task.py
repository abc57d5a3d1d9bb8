"""A task of one's own, defined here and nowhere else: its examples, a no-tool environment and a
scorer whose metric is not EM. It runs through ``run_from_config`` and ``reactlab run`` with the
scripted model, with no change to the runner, the CLI or the agents."""

from __future__ import annotations

import contextlib
import json

import pytest
from typer.testing import CliRunner

from reactlab.cli import app
from reactlab.config import ModelRef, RunConfig
from reactlab.envs.none import NoToolEnv
from reactlab.runner import run_from_config
from reactlab.tasks import TASKS
from reactlab.types import Example

QUESTIONS = {"What is 2+3?": "5", "What is 4+4?": "8", "What is 9-3?": "6"}


class Arithmetic:
    name = "arithmetic"
    splits = ("test",)
    eval_splits = ("test",)
    metrics = ("accuracy",)
    main_metric = "accuracy"
    default_prompt = "zeroshot"

    def examples(self, split="test", limit=None, seed=None, data=None):
        exs = [Example(id=f"a{i}", question=q, answer=a, aliases=[f"{a}.0"]) for i, (q, a) in enumerate(QUESTIONS.items())]
        return exs[:limit] if limit is not None else exs

    def score(self, example, answer):
        return {"accuracy": float(answer.strip() in example.answers)}

    def environments(self, examples, *, data=None, corpus=None, index=None):
        return contextlib.nullcontext(NoToolEnv)


@pytest.fixture
def script(tmp_path, monkeypatch):
    """Replies keyed by question: right, right (by its alias), wrong after a tool call the task lacks."""
    monkeypatch.setitem(TASKS, "arithmetic", Arithmetic)
    path = tmp_path / "script.json"
    path.write_text(json.dumps({
        "2+3": " I add them.\nAction 1: Finish[5]",
        "4+4": " Eight.\nAction 1: Finish[8.0]",
        "9-3": " I look it up.\nAction 1: Search[subtraction]",
    }))
    return f"scripted:{path}"


def test_through_run_from_config(script, tmp_path, capsys):
    cfg = RunConfig(out=str(tmp_path / "run"), task="arithmetic", split="test", model=ModelRef(name=script),
                    max_steps=2)
    summary = run_from_config(cfg, progress=True)
    assert summary.main_metric == "accuracy" and set(summary.metrics) == {"accuracy"}
    assert summary.n == 3 and summary.main == pytest.approx(2 / 3)
    assert summary.status == {"finished": 2, "max_steps": 1}
    assert "accuracy=" in capsys.readouterr().err  # the progress bar shows the task's own metric
    trajs = {t["id"]: t for t in map(json.loads, (tmp_path / "run/trajectories.jsonl").read_text().splitlines())}
    assert trajs["a2"]["steps"][0]["observation"].startswith("Invalid action: Search[subtraction]")
    assert {t["task"] for t in trajs.values()} == {"arithmetic"}
    assert {t["prompt_id"] for t in trajs.values()} == {"zeroshot@1/react"}  # the task's default prompt
    assert json.loads((tmp_path / "run/run.json").read_text())["task"] == "arithmetic"


def test_through_the_command(script, tmp_path):
    out = tmp_path / "cli"
    res = CliRunner().invoke(app, ["run", "--task", "arithmetic", "--split", "test", "--model", script,
                                   "--max-steps", "2", "--out", str(out), "-q"])
    assert res.exit_code == 0, res.output
    assert "accuracy=0.667" in res.output and "EM" not in res.output
    assert json.loads((out / "summary.json").read_text())["accuracy"] == pytest.approx(2 / 3)


def test_the_contamination_guard_asks_every_task(script):
    from reactlab.data.select import eval_splits, excluded_questions, normalize_question

    assert "arithmetic:test" in eval_splits()
    assert normalize_question("What is 2+3?") in excluded_questions()
