"""Scores: within-k accuracies and MAE by hand, Kendall's tau-b with ties by hand and against SciPy."""

from __future__ import annotations

import math
import random

import pytest

from reactlab.budget.metrics import kendall_tau_b, score, table


def test_scores_by_hand():
    s = score([2, 4, 7, 3, 3], [2, 3, 4, 5, 3])
    assert (s["exact"], s["within1"], s["within2"], s["n"]) == (0.4, 0.6, 0.8, 5)
    assert s["mae"] == pytest.approx((0 + 1 + 3 + 2 + 0) / 5)


def test_tau_b_with_ties_by_hand():
    # x = [1, 1, 2, 3], y = [1, 2, 2, 3]: pairs (0,1) tie in x; (0,2) C; (0,3) C; (1,2) tie in y; (1,3) C; (2,3) C
    # C = 4, D = 0, n0 = 6, tx = 1, ty = 1: tau_b = 4 / sqrt(5 * 5) = 0.8
    assert kendall_tau_b([1, 1, 2, 3], [1, 2, 2, 3]) == pytest.approx(0.8)
    # one discordant pair: x = [1, 2, 3], y = [2, 1, 3]: C = 2, D = 1: 1/3
    assert kendall_tau_b([1, 2, 3], [2, 1, 3]) == pytest.approx(1 / 3)
    assert math.isnan(kendall_tau_b([2, 2, 2], [1, 2, 3]))


def test_tau_b_agrees_with_scipy():
    stats = pytest.importorskip("scipy.stats")
    rng = random.Random(0)
    for _ in range(20):
        x = [rng.randint(0, 4) for _ in range(30)]
        y = [rng.randint(0, 4) for _ in range(30)]
        assert kendall_tau_b(x, y) == pytest.approx(stats.kendalltau(x, y).statistic, abs=1e-12)


def test_table_has_a_line_per_predictor_and_dashes_for_undefined():
    t = table({"mean": {"steps": score([3, 3], [2, 4]), "bucket": score([1, 1], [1, 2])}})
    head, rule, line = t.splitlines()
    assert "steps within2" in head and "bucket tau" in head and "bucket n" in head
    assert line == "| mean | 2 | 0.000 | 1.000 | 1.000 | 1.000 | — | 2 | 0.500 | 1.000 | 1.000 | 0.500 | — |"


def test_bootstrap_intervals_hold_the_estimate_and_repeat_with_the_seed():
    from reactlab.budget.metrics import bootstrap, score_ci

    rng = random.Random(1)
    gold = [rng.randint(0, 4) for _ in range(80)]
    pred = [g if rng.random() < 0.6 else rng.randint(0, 4) for g in gold]
    s = score_ci(pred, gold)
    for m in ("exact", "within1", "mae", "tau"):
        lo, hi = s["ci"][m]
        assert lo <= s[m] <= hi and lo < hi
    assert bootstrap(pred, gold, seed=3) == bootstrap(pred, gold, seed=3)
    # the weighted tau-b of a resample is the tau-b of the resampled lists
    assert bootstrap([1, 2, 2, 3], [1, 3, 2, 4], n_boot=1)["tau"][0] == pytest.approx(
        kendall_tau_b(*_resample([1, 2, 2, 3], [1, 3, 2, 4])), abs=1e-12)


def _resample(x, y):
    import numpy as np

    w = np.random.default_rng(0).multinomial(len(x), np.full(len(x), 1 / len(x)), size=1)[0]
    idx = [i for i, k in enumerate(w) for _ in range(int(k))]
    return [x[i] for i in idx], [y[i] for i in idx]


def test_clustered_bootstrap_resamples_whole_groups():
    from reactlab.budget.metrics import bootstrap

    # two groups: one all right, one all wrong; a resample holds 0, 1 or 2 copies of each
    ci = bootstrap([1, 1, 1, 5, 5, 5], [1, 1, 1, 1, 1, 1], groups=["a", "a", "a", "b", "b", "b"], n_boot=200)
    assert ci["exact"] == [0.0, 1.0]
    free = bootstrap([1, 1, 1, 5, 5, 5], [1, 1, 1, 1, 1, 1], n_boot=200)
    assert free["exact"][0] > 0.0 and free["exact"][1] < 1.0


def test_target_table_prints_intervals_and_the_ceiling():
    from reactlab.budget.metrics import score_ci, target_table

    t = target_table({"mode": score_ci([2, 2, 2], [1, 2, 3])}, score_ci([1, 2, 3], [1, 2, 3]))
    head, _, mode, ceiling = t.splitlines()
    assert head == "| predictor | n | exact | within1 | within2 | mae | tau |"
    assert mode.startswith("| mode | 3 | 0.333 [") and mode.endswith("| — |")
    assert ceiling.startswith("| *noise ceiling (repeat labelling)* | 3 | 1.000 [1.00, 1.00]")
