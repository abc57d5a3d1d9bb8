"""How a budget predictor is scored: exact / within-1 / within-2 accuracy, mean absolute error
and Kendall's tau-b between predicted and true values (steps, or token buckets), and the table
that puts predictors side by side.

Kendall's tau-b is computed here exactly (O(n^2) pairs; ties on either side handled as in
``scipy.stats.kendalltau``'s default variant), so no optional package is needed to score.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

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
