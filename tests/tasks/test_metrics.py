import math

import pytest

from reactlab.tasks.metrics import (
    aggregate,
    exact_match,
    f1,
    f1_precision_recall,
    mean_stderr,
    normalize_answer,
)


@pytest.mark.parametrize(
    "raw, norm",
    [
        ("The Beatles", "beatles"),
        ("  a  Tale of Two   Cities. ", "tale of two cities"),
        ("U.S.A.", "usa"),
        ("Anne's", "annes"),  # apostrophe is punctuation in the official script
        ("theatre", "theatre"),  # articles only as whole words
        ("An", ""),
        ("1,000", "1000"),
    ],
)
def test_normalize_answer_hand_checked(raw, norm):
    assert normalize_answer(raw) == norm


@pytest.mark.parametrize(
    "pred, gold, em, f",
    [
        ("Denise Levertov", "Denise Levertov", 1.0, 1.0),
        ("denise levertov.", "Denise Levertov", 1.0, 1.0),
        ("Levertov", "Denise Levertov", 0.0, 2 * 1.0 * 0.5 / 1.5),
        ("yes", "yes", 1.0, 1.0),
        ("yes", "no", 0.0, 0.0),
        ("no it is", "no", 0.0, 0.0),  # gold is 'no': prediction must be exactly 'no'
        ("noanswer", "something", 0.0, 0.0),
        ("", "Paris", 0.0, 0.0),
        ("the the the", "a", 1.0, 0.0),  # both normalise to '' -> EM 1, but no tokens -> F1 0
        ("Paris France Paris", "Paris", 0.0, 2 * (1 / 3) * 1.0 / (1 / 3 + 1.0)),
    ],
)
def test_em_f1_hand_checked(pred, gold, em, f):
    assert exact_match(pred, gold) == em
    assert f1(pred, gold) == pytest.approx(f)


def test_precision_recall():
    f, p, r = f1_precision_recall("big red dog", "red dog")
    assert (p, r) == pytest.approx((2 / 3, 1.0))
    assert f == pytest.approx(0.8)


def test_mean_stderr_and_aggregate():
    assert all(math.isnan(x) for x in mean_stderr([]))
    assert mean_stderr([0.25]) == (0.25, 0.0)
    m, se = mean_stderr([1, 0, 0, 1, 1])
    assert m == pytest.approx(0.6)
    assert se == pytest.approx(math.sqrt(0.3 / 5))
    agg = aggregate([{"em": 1, "f1": 1}, {"em": 0, "f1": 0.5}])
    assert agg["em"] == {"mean": 0.5, "stderr": pytest.approx(0.5), "n": 2}
    assert agg["f1"]["mean"] == pytest.approx(0.75)
