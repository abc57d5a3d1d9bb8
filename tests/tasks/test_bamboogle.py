"""Bamboogle: the CSV, EM/F1 after normalisation, answer coverage."""

from __future__ import annotations

import pytest

from reactlab.tasks.bamboogle import Bamboogle, load_file


def test_all_125_and_scores(vendored_index):
    task = Bamboogle()
    exs = task.examples("eval")
    assert len(exs) == 125 and exs[0].answer == "james madison"
    assert task.score(exs[0], "James Madison.") == {"em": 1.0, "f1": 1.0}
    task.prepare(exs, vendored_index)
    covered = sum(e.meta["covered"] for e in exs)
    assert 0 < covered < 125
    assert exs[0].meta["covered"] and task.score(exs[0], "Madison")["em_covered"] == 0.0


def test_mentions_is_a_phrase_match(vendored_index):
    assert vendored_index.mentions("James Madison") and vendored_index.mentions("james MADISON")
    assert not vendored_index.mentions("madison james xylophone") and not vendored_index.mentions("!!")


@pytest.mark.parametrize("text, needle", [
    ("Q,A\nx,y\n", ":1: expected the header 'Question,Answer'"),
    ("Question,Answer\nWho?,\n", ":2: expected a question and an answer"),
])
def test_malformed_csv(tmp_path, text, needle):
    f = tmp_path / "b.csv"
    f.write_text(text)
    with pytest.raises(ValueError, match=needle):
        load_file(f)
