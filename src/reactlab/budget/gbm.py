"""Gradient-boosted regression trees as plain JSON: fitted with scikit-learn's
``GradientBoostingRegressor`` (squared error), saved as its trees' arrays, and evaluated here in
pure Python, so a saved predictor (and a server that loads one) needs no scikit-learn.

scikit-learn compares a feature as float32 against each threshold; ``predict`` rounds the same way,
so it gives scikit-learn's own predictions.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

PARAMS = {"n_estimators": 200, "max_depth": 3, "learning_rate": 0.05, "subsample": 0.8, "min_samples_leaf": 5,
          "random_state": 0}
"""Small trees, slow learning rate, row subsampling: a few hundred rows must not be memorised."""


def fit(x: Sequence[Sequence[float]], y: Sequence[float], **params: Any) -> dict[str, Any]:
    """Fit on rows ``x`` and targets ``y``; the model as a JSON-able dict (``predict`` reads it)."""
    try:
        from sklearn.ensemble import GradientBoostingRegressor
    except ModuleNotFoundError:
        raise ModuleNotFoundError("fitting the GBM needs scikit-learn: pip install 'reactlab[budget]'") from None
    gbm = GradientBoostingRegressor(**(PARAMS | params)).fit(x, y)
    trees = []
    for (est,) in gbm.estimators_:
        t = est.tree_
        trees.append({"feature": [int(f) for f in t.feature], "threshold": [float(v) for v in t.threshold],
                      "left": [int(v) for v in t.children_left], "right": [int(v) for v in t.children_right],
                      "value": [float(v[0][0]) for v in t.value]})
    return {"init": float(gbm.init_.constant_[0][0]), "learning_rate": float(gbm.learning_rate), "trees": trees}


def _f32(v: float) -> float:
    return float(struct.unpack("f", struct.pack("f", v))[0])


def predict(model: dict[str, Any], x: Sequence[float]) -> float:
    """The model's prediction for one row ``x``."""
    xs = [_f32(v) for v in x]
    out = model["init"]
    for t in model["trees"]:
        node = 0
        while t["left"][node] != -1:
            node = t["left"][node] if xs[t["feature"][node]] <= t["threshold"][node] else t["right"][node]
        out += model["learning_rate"] * t["value"][node]
    return float(out)
