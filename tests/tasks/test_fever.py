"""FEVER: labels, the ReAct sample split, evidence titles, coverage and the oracle."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from reactlab.cli import app
from reactlab.config import RunConfig
from reactlab.runner import run_from_config
from reactlab.tasks.fever import FEVER, load_file, page_title
from reactlab.tasks.metrics import fever_label


@pytest.mark.parametrize("answer, label", [
    ("SUPPORTS", "SUPPORTS"), ("supports", "SUPPORTS"), ("Supported.", "SUPPORTS"), ("REFUTES", "REFUTES"),
    ("refuted", "REFUTES"), ("NOT ENOUGH INFO", "NOT ENOUGH INFO"), ("not enough information", "NOT ENOUGH INFO"),
    ("NOT_ENOUGH_INFO", "NOT ENOUGH INFO"), ("", ""), ("The claim is supported", ""), ("unsupported", ""),
])
def test_labels_from_free_answers(answer, label):
    assert fever_label(answer) == label


def test_splits_follow_the_react_protocol():
    task = FEVER()
    ev, dev, train = task.examples("eval"), task.examples("dev"), task.examples("train")
    assert (len(ev), len(dev), len(train)) == (500, 7405, 2594)
    assert {e.id for e in ev} <= {e.id for e in dev} and not {e.id for e in dev} & {e.id for e in train}
    assert ev[0].question == "Paramore is not from Tennessee." and ev[0].answer == "REFUTES"


def test_evidence_titles_and_scores():
    assert page_title("Soul_Food_-LRB-film-RRB-") == "Soul Food (film)"
    ex = next(e for e in FEVER().examples("eval") if e.answer == "SUPPORTS")
    assert ex.meta["evidence"] and all(isinstance(t, str) for s in ex.meta["evidence"] for t in s)
    assert FEVER().score(ex, "supports") == {"accuracy": 1.0}  # no coverage before prepare
    ex.meta["covered"] = True
    assert FEVER().score(ex, "REFUTES") == {"accuracy": 0.0, "covered": 1.0, "accuracy_covered": 0.0}


def test_oracle_is_right_on_every_covered_claim(vendored_index, tmp_path):
    s = run_from_config(RunConfig(out=str(tmp_path / "o"), task="fever", agent="oracle", split="eval"),
                        index=vendored_index, progress=False)
    assert s.n == 500 and s.metrics["accuracy_covered"] >= 0.97
    assert 0.1 < s.metrics["covered"] < 0.2  # 46 of the 321 verifiable claims (data/README.md)
    trajs = [json.loads(line) for line in (tmp_path / "o" / "trajectories.jsonl").read_text().splitlines()]
    assert all(t["task"] == "fever" for t in trajs)
    assert all(t["answer"] == "NOT ENOUGH INFO" for t in trajs if t["gold"] == "NOT ENOUGH INFO")


@pytest.mark.parametrize("line, needle", [
    ('{"id": 1, "claim": "c"}', ":1: field 'label' missing"),
    ('{"id": 1, "claim": "c", "label": "TRUE", "evidence": []}', ":1: field 'label' must be one of"),
    ('{"id": 1, "claim": "c", "label": "SUPPORTS", "evidence": 3}', ":1: field 'evidence'"),
    ("{oops", ":1: invalid JSON"),
])
def test_malformed_files_name_file_and_line(tmp_path, line, needle):
    f = tmp_path / "claims.jsonl"
    f.write_text(line + "\n")
    with pytest.raises(ValueError, match=needle.replace("(", r"\(")):
        load_file(f)
    res = CliRunner().invoke(app, ["run", "--task", "fever", "--agent", "oracle", "--data", str(f),
                                   "--out", str(tmp_path / "o"), "-q"])
    assert res.exit_code == 2 and str(f) in res.output and "Traceback" not in res.output
