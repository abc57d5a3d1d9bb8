"""Labels from runs: medians over sampled runs with their spread, quantile bucket edges, the
contamination guard (evaluation questions are test rows only), strict reading of rows."""

from __future__ import annotations

import json

import pytest

from reactlab.budget.labels import bucket_of, build_budget, label_rows, load_budget, quantile_edges
from reactlab.data.select import normalize_question
from reactlab.data.sources import Sample
from reactlab.io import DataError

from .conftest import traj, write_run


def test_sampled_runs_give_one_row_with_the_median_and_the_spread():
    samples = [Sample(traj(f"q#{k}", "Who?", s, t), "src", "") for k, (s, t) in enumerate([(2, 40), (5, 90), (3, 60), (4, 80)], 1)]
    samples.append(Sample(traj("other", "Who?", 6, 100, model="other-model"), "src", ""))
    samples.append(Sample(traj("bad", "Why?", 2, 10, status="error"), "src", ""))
    rows, dropped = label_rows(samples, excluded=set(), val_frac=0.0)
    assert dropped == {"error": 1}
    (r, other) = rows
    assert (r.steps, r.tokens, r.steps_all, r.steps_spread) == (3, 60, [2, 5, 3, 4], 3)
    assert r.ids == ["q#1", "q#2", "q#3", "q#4"] and r.split == "train"
    assert (other.model, other.steps, other.steps_all) == ("other-model", 6, [6])


def test_evaluation_questions_are_test_rows_never_training_rows():
    samples = [Sample(traj("e", "An Eval Question?", 2, 40), "s", ""), Sample(traj("t", "A train one?", 3, 50), "s", "")]
    rows, _ = label_rows(samples, excluded={normalize_question("an eval question")}, val_frac=0.0)
    assert [(r.question, r.split) for r in rows] == [("An Eval Question?", "test"), ("A train one?", "train")]


def test_quantile_edges_and_buckets():
    assert quantile_edges(list(range(100)), 5) == [20, 40, 60, 80]
    values = [10, 20, 20, 30, 40, 50, 60, 70, 80, 1000]
    edges = quantile_edges(values, 3)
    counts = [sum(bucket_of(v, edges) == b for v in values) for b in range(len(edges) + 1)]
    assert counts == [3, 3, 4]
    with pytest.raises(ValueError, match="--buckets"):
        quantile_edges([], 5)


def test_build_writes_splits_and_stats(budget_dir):
    stats = json.loads((budget_dir / "stats.json").read_text())
    data = load_budget(budget_dir)
    assert stats["edges"] == data.edges and "quantiles" in stats["edges_rule"] and len(data.edges) == 4
    assert stats["rows"]["train"] == len(data.rows["train"]) > 20 and stats["rows"]["val"] > 0
    assert sum(stats["rows"].values()) == 40 and stats["runs"] == 120
    train_buckets = [r.bucket for r in data.rows["train"]]
    assert max(train_buckets.count(b) for b in set(train_buckets)) <= len(train_buckets) / 2  # quantiles spread them
    assert {r.question for r in data.rows["train"]}.isdisjoint({r.question for r in data.rows["val"]})
    # each question's runs are label, label - 1, label + 1: the first run is never the others' lower
    # median (label - 1) but always within 1 of it
    agree = stats["run_agreement"]
    assert agree["questions"] == 40 and agree["steps"] == {"exact": 0.0, "within1": 1.0}


def test_given_edges_and_rows_without_token_counts(tmp_path):
    run = write_run(tmp_path / "r", [traj("a", "Q one?", 2, None), traj("b", "Q two?", 3, 70)])
    stats = build_budget([str(run)], tmp_path / "b", val_frac=0.0, edges=[100, 50])
    data = load_budget(tmp_path / "b")
    assert stats["edges"] == [50, 100] and stats["edges_rule"] == "given"
    assert [(r.tokens, r.bucket) for r in data.rows["train"]] == [(None, None), (70, 1)]


def test_a_bad_row_names_file_line_and_field(budget_dir, tmp_path):
    bad = tmp_path / "b"
    bad.mkdir()
    (bad / "stats.json").write_text((budget_dir / "stats.json").read_text())
    lines = (budget_dir / "train.jsonl").read_text().splitlines()
    row = json.loads(lines[1])
    row["steps"] = "three"
    (bad / "train.jsonl").write_text("\n".join([lines[0], json.dumps(row)]) + "\n")
    with pytest.raises(DataError, match=r"train.jsonl:2: field 'steps'"):
        load_budget(bad)
    with pytest.raises(FileNotFoundError, match="budget build"):
        load_budget(tmp_path)
