"""The logic_mcq task: the problem-level split, the loader's errors, the scorer."""

import json

import pytest

from reactlab.io import DataError
from reactlab.tasks import make_task
from reactlab.tasks.logic_mcq import problem_split


def test_split_is_by_problem_and_covers_every_question():
    task = make_task("logic_mcq")
    every, ev, tr = (task.examples(s) for s in ("all", "eval", "train"))
    assert len(every) == 1421 and len({e.meta["problem_id"] for e in every}) == 500
    assert len(ev) + len(tr) == len(every)
    ev_p, tr_p = {e.meta["problem_id"] for e in ev}, {e.meta["problem_id"] for e in tr}
    assert not ev_p & tr_p  # no problem on both sides
    assert 0.15 < len(ev_p) / 500 < 0.25
    assert all(problem_split(p) == "eval" for p in ev_p)
    assert task.eval_splits == ("eval",)


def test_examples_carry_problem_options_and_letters():
    ex = make_task("logic_mcq").examples("all")[0]
    assert ex.id == "round1_train_data_000/0" and ex.answer == "D" and ex.type == "round1_train_data_000"
    assert ex.question.startswith("有一个英文到法文的词汇表") and "\nA. le chat saute sur la lune\n" in ex.question
    assert ex.question.endswith("D. le chat sauts sur le lune") and len(ex.meta["options"]) == 4


def test_score_is_the_letter_and_chance_one_over_options():
    task = make_task("logic_mcq")
    ex = task.examples("all")[0]  # gold D, 4 options
    assert task.score(ex, "D") == {"accuracy": 1.0, "chance": 0.25}
    assert task.score(ex, " d ")["accuracy"] == 1.0 and task.score(ex, "")["accuracy"] == 0.0


@pytest.mark.parametrize(("record", "message"), [
    ({"problem": "p", "questions": []}, "field 'id' missing"),
    ({"id": "x", "problem": "p", "questions": [{"question": "q", "options": ["a"], "answer": "A"}]},
     "questions[0]: field 'options' must hold 2-7 options, got 1"),
    ({"id": "x", "problem": "p", "questions": [{"question": "q", "options": ["a", "b"]}]},
     "questions[0]: field 'answer' missing"),
    ({"id": "x", "problem": "p", "questions": [{"question": "q", "options": ["a", "b"], "answer": "C"}]},
     "questions[0]: field 'answer' must be one of A-B, not 'C'"),
])
def test_malformed_files_name_the_line_and_field(tmp_path, record, message):
    good = {"id": "ok", "problem": "p", "questions": [{"question": "q", "options": ["a", "b"], "answer": "A"}]}
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps(record) + "\n", encoding="utf-8")
    with pytest.raises(DataError) as e:
        make_task("logic_mcq").examples(data=path)
    assert str(e.value).startswith(f"{path}:2") and message in str(e.value)


def test_a_bad_file_exits_2_with_one_line(tmp_path):
    from typer.testing import CliRunner

    from reactlab.cli import app

    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "x", "problem": "p", "questions": [{"question": "q", "options": ["a", "b"]}]}\n')
    res = CliRunner().invoke(app, ["run", "--task", "logic_mcq", "--agent", "pipeline", "--model", "scripted:x.json",
                                   "--data", str(path), "--out", str(tmp_path / "out"), "-q"])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert f"{path}:1: questions[0]: field 'answer' missing" in res.output
