"""Budget predictors behind one interface, ``predict(questions) -> list[Prediction]``: ``MeanMode``
(the baselines), ``FeatureRegressor`` (ridge regression on question features, optionally with the
environment's facts of ``budget.env``; saved as JSON so it predicts without scikit-learn),
``GBMRegressor`` (gradient-boosted trees on the same features, ``budget.gbm``) and ``LLMPredictor``
(any model spec + adapter asked the prompts of ``budget.prompts``). Each is saved as ``predictor.json`` and read back by ``load_predictor``.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from reactlab.budget.env import CAPS as _CAPS
from reactlab.budget.env import WH_WORDS as _WH
from reactlab.budget.labels import BudgetRow, Question
from reactlab.io import DataError, write_json_atomic

PREDICTOR_FILE = "predictor.json"


@dataclass
class Prediction:
    """Predicted steps and token bucket; ``parsed`` is False when a model gave no number and the
    fallback was used."""

    steps: int
    bucket: int
    parsed: bool = True


class Predictor(Protocol):
    kind: str
    edges: list[int]

    def predict(self, questions: Sequence[Question]) -> list[Prediction]: ...

    def to_dict(self) -> dict[str, Any]: ...


def _group(q: Question) -> str:
    return f"{q.task}|{q.agent}|{q.method}|{q.model}"


def _stat(values: list[int], kind: str) -> int:
    if kind == "mean":
        return int(math.floor(statistics.fmean(values) + 0.5))
    return Counter(values).most_common(1)[0][0]


class MeanMode:
    """The training labels' mean or mode (module docstring)."""

    def __init__(self, kind: str, table: dict[str, list[int]], overall: list[int], edges: list[int]):
        if kind not in ("mean", "mode"):
            raise ValueError(f"MeanMode kind is mean or mode, not {kind!r}")
        self.kind, self.table, self.overall, self.edges = kind, table, overall, edges

    @classmethod
    def fit(cls, rows: Sequence[BudgetRow], kind: str = "mean", edges: Sequence[int] = ()) -> MeanMode:
        if not rows:
            raise ValueError("no training rows to fit a predictor on")
        groups: dict[str, list[BudgetRow]] = {}
        for r in rows:
            groups.setdefault(_group(r), []).append(r)

        def pair(rs: Sequence[BudgetRow]) -> list[int]:
            buckets = [r.bucket for r in rs if r.bucket is not None] or [0]
            return [_stat([r.steps for r in rs], kind), _stat(buckets, kind)]

        return cls(kind, {g: pair(rs) for g, rs in groups.items()}, pair(rows), list(edges))

    def predict(self, questions: Sequence[Question]) -> list[Prediction]:
        out = []
        for q in questions:
            steps, bucket = self.table.get(_group(q), self.overall)
            out.append(Prediction(steps, bucket))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "table": self.table, "overall": self.overall, "edges": self.edges}


_COMPARE = re.compile(r"\b(or|both|same|older|younger|first|earlier|later|more|less|larger|smaller|longer)\b", re.I)


def features(q: Question) -> dict[str, float]:
    """Numeric features of a question (module docstring).

    >>> f = features(Question("Who is older, Ed Wood or Tim Burton?", type="comparison"))
    >>> f["entities"], f["compare_cues"], f["wh=who"], f["type=comparison"]
    (2.0, 2.0, 1.0, 1.0)
    """
    text = q.question
    words = text.split()
    first = words[0].lower().strip("\"'") if words else ""
    rest = " ".join(words[1:]) if first in _WH else text  # a capitalised question word is no entity
    out = {"chars": float(len(text)), "words": float(len(words)), "entities": float(len(_CAPS.findall(rest))),
           "numbers": float(len(re.findall(r"\d+", text))), "quotes": float(text.count('"') // 2),
           "compare_cues": float(len(_COMPARE.findall(text))), "commas": float(text.count(","))}
    out |= {f"wh={w}": float(first == w) for w in _WH}
    out |= {f"type={t}": float(q.type == t) for t in ("bridge", "comparison")}
    return out


_ENV: Any = None


def shared_env() -> Any:
    """One ``budget.env.EnvFeatures`` over the default wiki index for every predictor of a process."""
    global _ENV
    if _ENV is None:
        from reactlab.budget.env import EnvFeatures

        _ENV = EnvFeatures()
    return _ENV


class FeatureRegressor:
    """Ridge regression on ``features`` (+ ``budget.env``'s facts when ``env``) + one-hot group,
    standardised; one per target. ``envf``: the env features' source (default: ``shared_env()``)."""

    def __init__(self, names: list[str], groups: list[str], models: dict[str, dict[str, Any]],
                 ranges: dict[str, list[int]], edges: list[int], env: bool = False, envf: Any = None):
        self.kind = "features+env" if env else "features"
        self.names, self.groups, self.models, self.ranges, self.edges = names, groups, models, ranges, edges
        self.env, self.envf = env, envf

    def _features(self, q: Question) -> dict[str, float]:
        f = features(q)
        if self.env:
            f |= (self.envf or shared_env())(q.question)
        return f

    def _x(self, q: Question) -> list[float]:
        f = self._features(q)
        g = _group(q)
        return [f[n] for n in self.names] + [float(g == x) for x in self.groups]

    @classmethod
    def fit(cls, rows: Sequence[BudgetRow], edges: Sequence[int] = (), alpha: float = 1.0, env: bool = False,
            envf: Any = None) -> FeatureRegressor:
        try:
            from sklearn.linear_model import Ridge
            from sklearn.preprocessing import StandardScaler
        except ModuleNotFoundError:
            raise ModuleNotFoundError("the feature regressor needs scikit-learn: pip install 'reactlab[budget]'") from None
        if not rows:
            raise ValueError("no training rows to fit a predictor on")
        self = cls([], sorted({_group(r) for r in rows}), {}, {}, list(edges), env=env, envf=envf)
        self.names = list(self._features(rows[0]))
        for target in ("steps", "bucket"):
            rs = [r for r in rows if getattr(r, target) is not None] or list(rows)
            y = [float(getattr(r, target) or 0) for r in rs]
            scaler = StandardScaler().fit([self._x(r) for r in rs])
            ridge = Ridge(alpha=alpha).fit(scaler.transform([self._x(r) for r in rs]), y)
            scale = [float(s) if s else 1.0 for s in scaler.scale_]
            self.models[target] = {"mean": [float(m) for m in scaler.mean_], "scale": scale,
                                   "coef": [float(c) for c in ridge.coef_], "intercept": float(ridge.intercept_)}
            self.ranges[target] = [int(min(y)), int(max(y))]
        return self

    def _raw(self, x: list[float], target: str) -> float:
        m = self.models[target]
        return m["intercept"] + sum(c * (v - mu) / s for c, v, mu, s in zip(m["coef"], x, m["mean"], m["scale"], strict=True))

    def _one(self, x: list[float], target: str) -> int:
        lo, hi = self.ranges[target]
        return min(hi, max(lo, int(math.floor(self._raw(x, target) + 0.5))))

    def predict(self, questions: Sequence[Question]) -> list[Prediction]:
        out = []
        for q in questions:
            x = self._x(q)
            out.append(Prediction(self._one(x, "steps"), self._one(x, "bucket")))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "names": self.names, "groups": self.groups, "models": self.models, "ranges": self.ranges,
                "edges": self.edges, "env": self.env}


class GBMRegressor(FeatureRegressor):
    """Gradient-boosted trees (``budget.gbm``) on the same features as ``FeatureRegressor`` with
    ``env``, one model per target; saved as JSON, predicts without scikit-learn."""

    def __init__(self, names: list[str], groups: list[str], models: dict[str, dict[str, Any]],
                 ranges: dict[str, list[int]], edges: list[int], env: bool = True, envf: Any = None):
        super().__init__(names, groups, models, ranges, edges, env=env, envf=envf)
        self.kind = "gbm"

    @classmethod
    def fit(cls, rows: Sequence[BudgetRow], edges: Sequence[int] = (), alpha: float = 1.0, env: bool = True,
            envf: Any = None) -> GBMRegressor:
        from reactlab.budget import gbm

        if not rows:
            raise ValueError("no training rows to fit a predictor on")
        self = cls([], sorted({_group(r) for r in rows}), {}, {}, list(edges), env=env, envf=envf)
        self.names = list(self._features(rows[0]))
        for target in ("steps", "bucket"):
            rs = [r for r in rows if getattr(r, target) is not None] or list(rows)
            y = [float(getattr(r, target) or 0) for r in rs]
            self.models[target] = gbm.fit([self._x(r) for r in rs], y)
            self.ranges[target] = [int(min(y)), int(max(y))]
        return self

    def _raw(self, x: list[float], target: str) -> float:
        from reactlab.budget import gbm

        return gbm.predict(self.models[target], x)


class LLMPredictor:
    """A model asked ``budget.prompts`` (module docstring). ``llm``: an already built model (tests);
    else ``model`` (+ ``adapter``) is loaded at the first ``predict``."""

    def __init__(self, model: str, edges: list[int], fallback: list[int], adapter: str | None = None,
                 llm: Any = None, max_new_tokens: int = 8):
        self.kind = "llm"
        self.model, self.adapter, self.edges, self.fallback = model, adapter, edges, fallback
        self.llm, self.max_new_tokens = llm, max_new_tokens

    def _model(self) -> Any:
        if self.llm is None:
            from reactlab.llm import make_llm

            self.llm = make_llm(self.model, **({"adapter": self.adapter} if self.adapter else {}))
        return self.llm

    def predict(self, questions: Sequence[Question]) -> list[Prediction]:
        from reactlab.budget.prompts import TARGETS, prompt, read_answer
        from reactlab.types import GenParams

        prompts = [prompt(q, t, self.edges) for q in questions for t in TARGETS]
        comps = self._model().generate(prompts, GenParams(max_new_tokens=self.max_new_tokens, temperature=0.0)) \
            if prompts else []
        out = []
        for i in range(len(questions)):
            steps, bucket = read_answer(comps[2 * i].text), read_answer(comps[2 * i + 1].text)
            out.append(Prediction(steps if steps is not None else self.fallback[0],
                                  min(max(bucket, 0), len(self.edges)) if bucket is not None else self.fallback[1],
                                  parsed=steps is not None and bucket is not None))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "model": self.model, "adapter": self.adapter, "edges": self.edges,
                "fallback": self.fallback, "max_new_tokens": self.max_new_tokens}


FITTED = ("mean", "mode", "features", "features+env", "gbm")
"""The predictors fitted in seconds on a dataset's training rows (no LLM)."""


def fit_baseline(kind: str, rows: Sequence[BudgetRow], edges: Sequence[int]) -> Predictor:
    """A predictor of ``FITTED`` fitted on ``rows`` (``edges``: the dataset's token bucket edges,
    kept to print ranges)."""
    if kind in ("mean", "mode"):
        return MeanMode.fit(rows, kind, edges)
    if kind in ("features", "features+env"):
        return FeatureRegressor.fit(rows, edges, env=kind == "features+env")
    if kind == "gbm":
        return GBMRegressor.fit(rows, edges)
    raise ValueError(f"unknown baseline {kind!r}; known: {', '.join(FITTED)}")


def save_predictor(p: Predictor, path: str | Path) -> Path:
    """Write ``p`` as JSON: to ``path`` when it ends in ``.json``, else to ``path/predictor.json``."""
    path = Path(path)
    target = path if path.suffix == ".json" else path / PREDICTOR_FILE
    write_json_atomic(target, p.to_dict())
    return target


def load_predictor(path: str | Path) -> Predictor:
    """A saved predictor: a ``predictor.json`` file or a directory holding one (an LLM predictor's
    adapter directory)."""
    path = Path(path)
    file = path / PREDICTOR_FILE if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"{file}: no such predictor (train one with `reactlab budget train`)")
    try:
        d = json.loads(file.read_text(encoding="utf-8"))
        kind = d["kind"]
        if kind in ("mean", "mode"):
            return MeanMode(kind, d["table"], d["overall"], d["edges"])
        if kind in ("features", "features+env"):
            return FeatureRegressor(d["names"], d["groups"], d["models"], d["ranges"], d["edges"],
                                    env=d.get("env", False))
        if kind == "gbm":
            return GBMRegressor(d["names"], d["groups"], d["models"], d["ranges"], d["edges"], env=d.get("env", True))
        if kind == "llm":
            return LLMPredictor(d["model"], d["edges"], d["fallback"], adapter=d.get("adapter"),
                                max_new_tokens=d.get("max_new_tokens", 8))
    except json.JSONDecodeError as e:
        raise DataError(f"{file}: not JSON ({e.msg})") from None
    except (KeyError, TypeError) as e:
        raise DataError(f"{file}: not a predictor record (field {e})") from None
    raise DataError(f"{file}: field 'kind': unknown predictor kind {kind!r} (mean, mode, features, features+env, gbm, llm)")
