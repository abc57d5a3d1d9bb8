"""bench/rl_train_questions.py: the train-pool records of an RL dataset's questions, in its order;
a question not in the split is a one-line error naming the file and line, exit 2, nothing written."""

import json
import sys

import pytest

from reactlab.tasks import make_task


def test_records_of_the_rows_questions_in_order(load_bench, tmp_path, monkeypatch, capsys):
    train = make_task("hotpotqa").examples("train")
    data = tmp_path / "prompts"
    data.mkdir()
    rows = [{"prompt": [{"role": "user", "content": e.question}], "answer": e.answer} for e in (train[5], train[2])]
    (data / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "q.json"
    monkeypatch.setattr(sys, "argv", ["rl_train_questions.py", str(data), "--out", str(out)])
    load_bench("rl_train_questions").main()
    got = json.loads(out.read_text())
    assert [r["question"] for r in got] == [train[5].question, train[2].question]
    assert [r["_id"] for r in got] == [train[5].id, train[2].id] and all("context" in r for r in got)

    (data / "train.jsonl").write_text((data / "train.jsonl").read_text() + json.dumps(
        {"prompt": [{"role": "user", "content": "Not a HotpotQA question?"}], "answer": "x"}) + "\n")
    monkeypatch.setattr(sys, "argv", ["rl_train_questions.py", str(data), "--out", str(tmp_path / "bad.json")])
    with pytest.raises(SystemExit) as err:
        load_bench("rl_train_questions").main()
    assert err.value.code == 2 and not (tmp_path / "bad.json").exists()
    assert "train.jsonl:3: question not in hotpotqa train" in capsys.readouterr().err
