"""The JSON trees predict exactly what scikit-learn's fitted model predicts."""

from __future__ import annotations

import json
import random

import pytest

from reactlab.budget import gbm


def test_json_trees_match_scikit_learn():
    ensemble = pytest.importorskip("sklearn.ensemble")
    rng = random.Random(0)
    x = [[rng.random() * 10, rng.randint(0, 3), rng.gauss(0, 1)] for _ in range(300)]
    y = [a * 2 + b * b + rng.gauss(0, 1) for a, b, _ in x]
    model = json.loads(json.dumps(gbm.fit(x, y)))  # what is saved is what predicts
    ref = ensemble.GradientBoostingRegressor(**gbm.PARAMS).fit(x, y).predict(x)
    assert [gbm.predict(model, row) for row in x] == pytest.approx(list(ref), abs=1e-9)
    assert len(model["trees"]) == gbm.PARAMS["n_estimators"]
