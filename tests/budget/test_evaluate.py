"""``evaluate_targets``: one table per target, held-out questions only, intervals and the ceiling."""

from __future__ import annotations

import json
import shutil

import pytest

from reactlab.budget import predictors
from reactlab.budget.env import EnvFeatures
from reactlab.budget.evaluate import evaluate_targets
from reactlab.budget.labels import load_budget


@pytest.fixture
def local_env(vendored_index, monkeypatch):
    monkeypatch.setattr(predictors, "_ENV", EnvFeatures(vendored_index))


def test_every_predictor_with_intervals_and_the_noise_ceiling(budget_dir, local_env):
    got = evaluate_targets(budget_dir, ["steps", "tokens"], ["mean", "mode", "features", "features+env", "gbm"],
                           n_boot=200)
    data = load_budget(budget_dir)
    train = {r.question for r in data.rows["train"]}
    assert got["steps"]["questions"] == len(data.rows["val"]) and not train & {r.question for r in data.rows["val"]}
    for target in ("steps", "tokens"):
        scores = got[target]["predictors"]
        assert set(scores) == {"mean", "mode", "features", "features+env", "gbm"}
        assert all(s["ci"]["exact"][0] <= s["exact"] <= s["ci"]["exact"][1] for s in scores.values())
        assert got[target]["ceiling"]["n"] > 0  # sampled runs: one run against the others' median
    # the synthetic steps follow the names in the question: the trees find it, a constant cannot
    assert got["steps"]["predictors"]["gbm"]["tau"] > 0.5 and got["steps"]["predictors"]["gbm"]["ci"]["tau"][0] > 0


def test_a_training_question_in_the_scored_split_is_refused(budget_dir, tmp_path, local_env):
    leak = tmp_path / "leak"
    shutil.copytree(budget_dir, leak)
    first = (leak / "train.jsonl").read_text().splitlines()[0]
    with (leak / "val.jsonl").open("a") as f:
        f.write(json.dumps(json.loads(first) | {"split": "val"}) + "\n")
    with pytest.raises(ValueError, match="ask a question a training row has"):
        evaluate_targets(leak, ["steps"], ["mean"], n_boot=10)


def test_call_tokens_need_call_rows(tmp_path, local_env):
    """Runs of layouts whose calls are not rebuilt (native tool calls, few-shot chat) give no call rows:
    scoring the target says so."""
    from reactlab.budget.labels import build_budget

    from .conftest import questions, traj, write_run

    trajs = [traj(f"q{i}", q, steps, tokens) for i, (q, steps, tokens) in enumerate(questions(12))]
    for n, t in enumerate(trajs):
        t.prompt_id = ("tools@1/react", "hotpotqa_react@1:chat/react")[n % 2]
    stats = build_budget([str(write_run(tmp_path / "run", trajs))], tmp_path / "b", val_frac=0.25)
    assert stats["calls_dropped"] == {"layout": sum(len(t.steps) for t in trajs)}
    with pytest.raises(ValueError, match="no calls in split"):
        evaluate_targets(tmp_path / "b", ["call_tokens"], n_boot=10)
