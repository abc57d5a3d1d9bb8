"""Predictors: the constant baselines, the feature regressor (beats a constant where the signal is
in the question), the LLM predictor's parsing and fallback on a scripted model, saving/loading."""

from __future__ import annotations

import json

import pytest

from reactlab.budget.labels import BudgetRow, Question, load_budget
from reactlab.budget.metrics import score
from reactlab.budget.predictors import (
    LLMPredictor,
    MeanMode,
    features,
    fit_baseline,
    load_predictor,
    save_predictor,
)
from reactlab.io import DataError


def row(q: str, steps: int, bucket: int, model: str = "m") -> BudgetRow:
    return BudgetRow(question=q, task="hotpotqa", model=model, steps=steps, bucket=bucket, tokens=10 * bucket)


def test_mean_and_mode_per_group_with_an_overall_fallback():
    rows = [row("a", 2, 0), row("b", 2, 0), row("c", 5, 3), row("d", 9, 4, model="big")]
    mean, mode = MeanMode.fit(rows, "mean"), MeanMode.fit(rows, "mode")
    q, big, unseen = Question("?", task="hotpotqa", model="m"), Question("?", task="hotpotqa", model="big"), Question("?")
    assert [(p.steps, p.bucket) for p in mean.predict([q, big, unseen])] == [(3, 1), (9, 4), (5, 2)]
    assert [(p.steps, p.bucket) for p in mode.predict([q, big])] == [(2, 0), (9, 4)]


def test_entity_count_reads_capitalised_spans():
    f = features(Question("Were Scott Derrickson and Ed Wood of the same nationality?"))
    assert f["entities"] == 2.0 and f["wh=were"] == 1.0 and f["compare_cues"] == 1.0
    assert features(Question("Which Bank of America tower is taller?"))["entities"] == 1.0


def test_feature_regressor_beats_the_mean_when_the_signal_is_in_the_question(budget_dir):
    data = load_budget(budget_dir)
    rows = data.rows["train"] + data.rows["val"]
    scores = {}
    for kind in ("mean", "features"):
        p = fit_baseline(kind, data.rows["train"], data.edges)
        preds = p.predict(rows)
        scores[kind] = score([x.steps for x in preds], [r.steps for r in rows])
    assert scores["features"]["mae"] < scores["mean"]["mae"] and scores["features"]["tau"] > 0.5


@pytest.mark.parametrize("kind", ["mean", "mode", "features"])
def test_saved_predictors_predict_the_same(budget_dir, tmp_path, kind):
    data = load_budget(budget_dir)
    p = fit_baseline(kind, data.rows["train"], data.edges)
    path = save_predictor(p, tmp_path / kind)
    assert path.name == "predictor.json"
    again = load_predictor(tmp_path / kind)
    assert again.predict(data.rows["val"]) == p.predict(data.rows["val"]) and again.edges == data.edges


def test_llm_predictor_parses_numbers_and_falls_back(tmp_path):
    from reactlab.llm.scripted import ScriptedLLM

    def answer(prompt):
        text = prompt[-1]["content"]
        if "Q-one" in text:
            return "3 steps" if "How many steps" in text else "bucket 9"
        return "I cannot tell" if "How many steps" in text else "1"

    p = LLMPredictor("scripted", edges=[50, 100], fallback=[2, 0], llm=ScriptedLLM(answer))
    one, two = p.predict([Question("Q-one?"), Question("Q-two?")])
    assert (one.steps, one.bucket, one.parsed) == (3, 2, True)  # bucket 9 clipped to the last bucket
    assert (two.steps, two.bucket, two.parsed) == (2, 1, False)  # no number: the fallback's steps


def test_llm_predictor_round_trips_through_json(tmp_path):
    save_predictor(LLMPredictor("smollm2", [50, 100], [2, 0], adapter="/a"), tmp_path)
    p = load_predictor(tmp_path)
    assert isinstance(p, LLMPredictor) and (p.model, p.adapter, p.edges, p.fallback) == ("smollm2", "/a", [50, 100], [2, 0])


def test_bad_predictor_files_are_data_errors(tmp_path):
    (tmp_path / "p.json").write_text(json.dumps({"kind": "oracle"}))
    with pytest.raises(DataError, match="field 'kind'"):
        load_predictor(tmp_path / "p.json")
    (tmp_path / "q.json").write_text(json.dumps({"kind": "mean"}))
    with pytest.raises(DataError, match="not a predictor record"):
        load_predictor(tmp_path / "q.json")
    with pytest.raises(FileNotFoundError, match="budget train"):
        load_predictor(tmp_path / "none")
