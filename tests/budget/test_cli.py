"""``reactlab budget build|train|eval|predict`` through the CLI, and one-line errors for bad input."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from reactlab.cli import app

from .conftest import write_run


def invoke(*args):
    return CliRunner().invoke(app, ["budget", *map(str, args)])


def test_build_train_eval_predict(sampled_run, tmp_path):
    res = invoke("build", "--from", sampled_run, "--out", tmp_path / "b", "--n-buckets", "4")
    assert res.exit_code == 0, res.output
    assert len(json.loads(res.output)["edges"]) == 3
    res = invoke("train", "features", "--data", tmp_path / "b", "--out", tmp_path / "f")
    assert res.exit_code == 0, res.output
    res = invoke("eval", tmp_path / "b", "-p", "mean", "-p", tmp_path / "f")
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0].startswith("| predictor | steps n | steps exact") and lines[2].startswith("| mean |")
    assert lines[3].startswith(f"| {tmp_path / 'f'} |") and len(lines) == 5
    assert lines[4].startswith("the agent against itself (") and "steps exact 0.000 within1 1.000" in lines[4]
    res = invoke("eval", tmp_path / "b", "-p", "mean", "--json")
    got = json.loads(res.output)
    assert set(got) == {"predictors", "run_agreement"} and got["predictors"]["mean"]["steps"]["n"] > 0
    (tmp_path / "qs.txt").write_text("question 1: how are NameA Person1 related?\n\n"
                                     "question 2: how are NameA Ann and NameB Bo and NameC Cy and NameD Di related?\n")
    res = invoke("predict", "-p", tmp_path / "f", "--file", tmp_path / "qs.txt", "--model", "m")
    assert res.exit_code == 0, res.output
    out = res.output.splitlines()
    assert len(out) == 2 and out[0].startswith("steps ") and "\ttokens " in out[0]
    assert int(out[1].split()[1]) > int(out[0].split()[1])  # more names, more steps


@pytest.mark.parametrize("args, message", [
    (["build", "--from", "{run}", "--out", "{tmp}/x", "--buckets", "10,abc"], "--buckets '10,abc': expected integers"),
    (["build", "--from", "{tmp}/nowhere", "--out", "{tmp}/x"], "no such file"),
    (["eval", "{tmp}"], "stats.json: no such file"),
    (["eval", "{budget}", "--split", "dev"], "unknown split 'dev'"),
    (["predict", "-p", "{tmp}", "Who?"], "no such predictor"),
    (["predict", "-p", "{tmp}"], "give a QUESTION or --file"),
    (["train", "sft", "--data", "{budget}", "-c", "lora.rank=3"], "lora.rank: unknown key"),
])
def test_bad_input_is_one_line_exit_2(sampled_run, budget_dir, tmp_path, args, message):
    bad = write_run(tmp_path / "bad", [])
    (bad / "trajectories.jsonl").write_text('{"id": "x", "question": "q", "steps": [{"thought": 1}]}\n')
    res = invoke(*[a.format(run=sampled_run, tmp=tmp_path, budget=budget_dir) for a in args])
    assert res.exit_code == 2 and message in res.output and "Traceback" not in res.output, res.output


def test_a_malformed_run_names_file_line_and_field(tmp_path):
    bad = write_run(tmp_path / "bad", [])
    (bad / "trajectories.jsonl").write_text('{"id": "x", "question": "q", "steps": [{"thought": 1}]}\n')
    res = invoke("build", "--from", bad, "--out", tmp_path / "x")
    assert res.exit_code == 2 and "trajectories.jsonl:1" in res.output and "thought" in res.output, res.output


def test_eval_targets_prints_one_table_per_target_with_intervals(sampled_run, tmp_path, vendored_index, monkeypatch):
    from reactlab.budget import predictors
    from reactlab.budget.env import EnvFeatures

    monkeypatch.setattr(predictors, "_ENV", EnvFeatures(vendored_index))
    res = invoke("build", "--from", sampled_run, "--out", tmp_path / "b", "--target", "steps", "--target", "tokens")
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["noise_ceiling"]["steps"]["n"] > 0 and not (tmp_path / "b" / "calls").exists()
    res = invoke("eval", tmp_path / "b", "--target", "steps", "--target", "tokens", "-p", "mode", "-p", "gbm")
    assert res.exit_code == 0, res.output
    tables = [line for line in res.output.splitlines() if line.startswith("| ")]
    assert len(tables) == 2 * 4  # head, mode, gbm, ceiling per target
    assert tables[1].startswith("| mode |") and "[" in tables[1] and tables[3].startswith("| *noise ceiling")
    assert "steps (" in res.output and "tokens (" in res.output and "buckets split at" in res.output
    res = invoke("build", "--from", sampled_run, "--out", tmp_path / "x", "--target", "cost")
    assert res.exit_code == 2 and "--target cost: known targets are steps, tokens, call_tokens" in res.output
