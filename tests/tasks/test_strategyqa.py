"""StrategyQA: yes/no scoring, splits, evidence pages and the oracle."""

from __future__ import annotations

import pytest

from reactlab.config import RunConfig
from reactlab.runner import run_from_config
from reactlab.tasks.metrics import yes_no
from reactlab.tasks.strategyqa import StrategyQA, load_file


@pytest.mark.parametrize("answer, want", [
    ("yes", "yes"), ("Yes.", "yes"), ("YES, because ...", "yes"), ("no", "no"), ("No, it did not", "no"),
    ("  no.", "no"), ("nope", ""), ("True", ""), ("I think yes", ""), ("", ""),
])
def test_yes_no_is_the_first_word(answer, want):
    assert yes_no(answer) == want


def test_splits_and_scores():
    task = StrategyQA()
    ev, train = task.examples("eval"), task.examples("train")
    assert (len(ev), len(train)) == (229, 2821) and {e.answer for e in ev} == {"yes", "no"}
    ex = ev[0]
    assert ex.answer == "no" and ex.meta["evidence"] == [["Albany, Georgia", "Albany, New York"]]
    assert task.score(ex, "No, it will not.") == {"accuracy": 1.0}
    assert task.score(ex, "yes") == {"accuracy": 0.0}


def test_oracle_is_right_on_every_covered_question(vendored_index, tmp_path):
    s = run_from_config(RunConfig(out=str(tmp_path / "o"), task="strategyqa", agent="oracle", split="eval"),
                        index=vendored_index, progress=False)
    assert s.n == 229 and s.metrics["accuracy_covered"] >= 0.97 and s.metrics["covered"] > 0.15


def test_malformed_file(tmp_path):
    f = tmp_path / "sqa.json"
    f.write_text('[{"qid": "1", "question": "Is it?", "answer": "yes"}]')
    with pytest.raises(ValueError, match="record 0: field 'answer' must be bool"):
        load_file(f)
