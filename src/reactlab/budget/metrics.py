"""How a budget predictor is scored: exact / within-1 / within-2 accuracy, mean absolute error
and Kendall's tau-b between predicted and true values (steps, or token buckets), and the table
that puts predictors side by side.

Kendall's tau-b is computed here exactly (O(n^2) pairs; ties on either side handled as in
``scipy.stats.kendalltau``'s default variant), so no optional package is needed to score.
``bootstrap`` puts a percentile 95% interval on every metric (numpy, which scikit-learn brings):
items are resampled in clusters (``groups``: all model calls of one question go together), and
``target_table`` prints one target's predictors with their intervals and the label set's noise
ceiling (the same metrics between two labellings of the same questions).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

METRICS = ("exact", "within1", "within2", "mae", "tau")


def kendall_tau_b(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b: ``(C - D) / sqrt((n0 - n1) (n0 - n2))`` with C / D the concordant /
    discordant pairs, ``n0`` all pairs, ``n1`` / ``n2`` the pairs tied in ``x`` / in ``y``. NaN when
    either side is constant (no ranking to compare).

    >>> kendall_tau_b([1, 2, 3], [1, 2, 3]), kendall_tau_b([1, 2, 3], [3, 2, 1])
    (1.0, -1.0)
    >>> round(kendall_tau_b([1, 2, 2, 3], [1, 3, 2, 4]), 4)
    0.9129
    """
    if len(x) != len(y):
        raise ValueError(f"kendall_tau_b: {len(x)} values against {len(y)}")
    n = len(x)
    c = d = tx = ty = 0
    for i in range(n):
        for j in range(i + 1, n):
            a, b = x[i] - x[j], y[i] - y[j]
            if a == 0:
                tx += 1
            if b == 0:
                ty += 1
            if a * b > 0:
                c += 1
            elif a * b < 0:
                d += 1
    n0 = n * (n - 1) // 2
    denom = math.sqrt((n0 - tx) * (n0 - ty))
    return (c - d) / denom if denom else float("nan")


def score(pred: Sequence[float], gold: Sequence[float]) -> dict[str, float]:
    """Every metric of ``METRICS`` for one target; ``n``: the number of scored items.

    >>> s = score([3, 2, 5, 1], [3, 3, 2, 1])
    >>> s["exact"], s["within1"], s["within2"], s["mae"], s["n"]
    (0.5, 0.75, 0.75, 1.0, 4)
    """
    if len(pred) != len(gold):
        raise ValueError(f"{len(pred)} predictions for {len(gold)} labels")
    if not gold:
        return {k: float("nan") for k in METRICS} | {"n": 0}
    err = [abs(p - g) for p, g in zip(pred, gold, strict=True)]
    n = len(err)
    return {"exact": sum(e == 0 for e in err) / n, "within1": sum(e <= 1 for e in err) / n,
            "within2": sum(e <= 2 for e in err) / n, "mae": sum(err) / n,
            "tau": kendall_tau_b(list(pred), list(gold)), "n": n}


def _cell(v: float) -> str:
    return "—" if v != v else f"{v:.3f}"


def table(results: Mapping[str, Mapping[str, Mapping[str, float]]]) -> str:
    """A markdown table: one line per predictor, ``steps`` and ``bucket`` metrics side by side, each
    with its ``n`` (rows without token counts have no bucket). ``results``: predictor -> target
    (``steps``, ``bucket``) -> ``score(...)``."""
    keys = ("n", *METRICS)
    cols = [f"{t} {m}" for t in ("steps", "bucket") for m in keys]
    lines = ["| predictor | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    for name, by_target in results.items():
        cells = [_cell(by_target.get(t, {}).get(m, float("nan"))) if m != "n" else str(by_target.get(t, {}).get("n", 0))
                 for t in ("steps", "bucket") for m in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


BOOT = 1000
"""Bootstrap resamples behind each interval."""


def bootstrap(pred: Sequence[float], gold: Sequence[float], groups: Sequence[Hashable] | None = None,
              n_boot: int = BOOT, seed: int = 0) -> dict[str, list[float]]:
    """A 95% percentile interval ``[lo, hi]`` for every metric of ``METRICS``: the items are
    resampled with replacement, whole ``groups`` at a time when given (NaN draws, a constant
    side for tau, are left out). A resample is a vector of weights, so tau-b is counted on weighted
    pairs: ``C - D = w' (sx * sy) w / 2`` and the ties ``(w' T w - W) / 2``.

    >>> ci = bootstrap([1, 2, 3, 4], [1, 2, 3, 4])
    >>> ci["exact"], ci["tau"]
    ([1.0, 1.0], [1.0, 1.0])
    """
    import numpy as np

    if len(pred) != len(gold):
        raise ValueError(f"{len(pred)} predictions for {len(gold)} labels")
    if not gold:
        return {k: [float("nan"), float("nan")] for k in METRICS}
    x, y = np.asarray(pred, dtype=float), np.asarray(gold, dtype=float)
    keys = list(range(len(x))) if groups is None else list(groups)
    index = {k: i for i, k in enumerate(dict.fromkeys(keys))}
    member = np.zeros((len(index), len(x)))
    member[[index[k] for k in keys], np.arange(len(x))] = 1.0
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(len(index), np.full(len(index), 1.0 / len(index)), size=n_boot)
    w = draws @ member  # (n_boot, n): how often each item is in each resample
    total = w.sum(1)
    err = np.abs(x - y)
    out: dict[str, Any] = {"exact": (w @ (err == 0)) / total, "within1": (w @ (err <= 1)) / total,
                           "within2": (w @ (err <= 2)) / total, "mae": (w @ err) / total}
    sx, sy = np.sign(x[:, None] - x[None, :]), np.sign(y[:, None] - y[None, :])
    cd = np.einsum("bi,ij,bj->b", w, sx * sy, w) / 2
    n0 = total * (total - 1) / 2
    tx = (np.einsum("bi,ij,bj->b", w, (sx == 0).astype(float), w) - total) / 2
    ty = (np.einsum("bi,ij,bj->b", w, (sy == 0).astype(float), w) - total) / 2
    denom = np.sqrt(np.clip((n0 - tx) * (n0 - ty), 0, None))
    with np.errstate(invalid="ignore", divide="ignore"):
        out["tau"] = np.where(denom > 0, cd / np.where(denom > 0, denom, 1), np.nan)
    cis = {}
    for k in METRICS:
        v = out[k][~np.isnan(out[k])]
        cis[k] = ([float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))] if len(v)
                  else [float("nan"), float("nan")])
    return cis


def score_ci(pred: Sequence[float], gold: Sequence[float], groups: Sequence[Hashable] | None = None,
             n_boot: int = BOOT, seed: int = 0) -> dict[str, Any]:
    """``score`` with ``ci``: ``bootstrap``'s interval of each metric."""
    return score(pred, gold) | {"ci": bootstrap(pred, gold, groups, n_boot, seed)}


def _with_ci(s: Mapping[str, Any], m: str) -> str:
    v = s.get(m, float("nan"))
    lo, hi = s.get("ci", {}).get(m, [float("nan"), float("nan")])
    return _cell(v) if lo != lo else f"{_cell(v)} [{lo:.2f}, {hi:.2f}]"


def target_table(results: Mapping[str, Mapping[str, Any]], ceiling: Mapping[str, Any] | None = None) -> str:
    """One target's markdown table: a line per predictor (``results``: name -> ``score_ci``), each
    metric with its 95% interval, and last the noise ceiling (``score_ci`` of a repeat labelling
    against the labels; its ``n`` counts the compared pairs). A constant predictor has no tau (—)."""
    lines = ["| predictor | n | " + " | ".join(METRICS) + " |", "|---|---:|" + "---:|" * len(METRICS)]
    rows = list(results.items()) + ([("*noise ceiling (repeat labelling)*", ceiling)] if ceiling else [])
    for name, s in rows:
        lines.append(f"| {name} | {s.get('n', 0)} | " + " | ".join(_with_ci(s, m) for m in METRICS) + " |")
    return "\n".join(lines)
