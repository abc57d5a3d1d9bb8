"""Sources: run dirs and FireAct files become trajectories; malformed input names file, line, field."""

import gzip
import json
import re

import pytest

from reactlab.data.formats import to_alpaca, to_messages
from reactlab.data.sources import load_source, read_file, split_name
from reactlab.io import DataError, read_records
from reactlab.paths import data_dir
from reactlab.types import Action


def test_run_dir_round_trips_trajectories(write_run, mk):
    trajs = [mk("Q one?"), mk("Q two?", answer="n", n_steps=3)]
    samples = load_source(str(write_run("r1", trajs)))
    assert [s.traj for s in samples] == trajs
    assert {s.source for s in samples} == {"r1"} and samples[1].where.endswith("trajectories.jsonl:2")
    # a file path and a NAME=PATH spec name the source differently, same records
    named = load_source(f"teacher={write_run('r2', trajs) / 'trajectories.jsonl'}")
    assert {s.source for s in named} == {"teacher"} and [s.traj for s in named] == trajs


def test_vendored_fireact_both_layouts_agree():
    alpaca, gpt = load_source("fireact:hotpotqa"), load_source("fireact:hotpotqa-gpt")
    assert len(alpaca) == len(gpt) == 500
    assert all(s.traj.status == "finished" and s.traj.gold == "" and s.traj.agent == "fireact" for s in alpaca)
    by_q = {s.traj.question: s.traj.steps for s in gpt}
    shared = [s for s in alpaca if s.traj.question in by_q]
    assert len(shared) == 500 and all(by_q[s.traj.question] == s.traj.steps for s in shared)
    assert alpaca[0].traj.answer == "Badr Hari" and alpaca[0].traj.steps[0].action == Action(
        "search", "best kick boxer in the world unsportsmanlike conducts crimes of violence")


def test_fireact_rows_render_back_byte_for_byte():
    """Reading then writing FireAct's own layouts changes nothing but trailing spaces (of 3 questions
    and 36 thoughts: the agent strips a thought's spaces the same way)."""
    base = data_dir() / "fireact/finetune"
    recs = [r for _, r in read_records(base / "alpaca_format/hotpotqa.json.gz")]
    for rec, s in zip(recs, load_source("fireact:hotpotqa"), strict=True):
        row = to_alpaca(s.traj)
        want = re.sub(r" +\n", "\n", rec["output"])
        assert (row["instruction"], row["input"], row["output"]) == (rec["instruction"].strip(), "", want)
    recs = [r for _, r in read_records(base / "gpt_format/hotpotqa.jsonl.gz")]
    for rec, s in zip(recs, load_source("fireact:hotpotqa-gpt"), strict=True):
        want = [dict(m) for m in rec["messages"][:-1]]  # the final observation is not a training turn
        for m in want:
            m["content"] = re.sub(r" +(\n|$)", r"\1", m["content"])
        assert to_messages(s.traj)["messages"] == want


def test_alpaca_options_prelude_and_question_label_join_the_question(tmp_path):
    rec = {"instruction": "Question: Which?", "input": "",
           "output": "A. red\nB. blue\nThought: Blue.\nAction: finish[B]\nObservation: Episode finished, reward = 1\n"}
    p = tmp_path / "mcq.json"
    p.write_text(json.dumps([rec]))
    (s,) = read_file(p, "mcq")
    assert s.traj.question == "Which?\nA. red\nB. blue" and s.traj.answer == "B" and s.traj.steps[0].thought == "Blue."


def test_split_name():
    assert split_name("runs/a/") == ("a", "runs/a/")
    assert split_name("runs/a/trajectories.jsonl") == ("a", "runs/a/trajectories.jsonl")
    assert split_name("x.json.gz") == ("x", "x.json.gz")


# --- malformed inputs: the message names the file, the line (or record) and the field ---------------


def _jsonl(tmp_path, name, lines):
    p = tmp_path / name
    p.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return p


def test_bad_json_line_names_file_and_line(tmp_path, mk):
    good = json.dumps(mk("Q?").to_dict())
    _jsonl(tmp_path, "trajectories.jsonl", [good, '{"id": "x", "question": '])
    with pytest.raises(DataError, match=r"trajectories\.jsonl:2: invalid JSON"):
        load_source(str(tmp_path))


def test_missing_trajectory_fields_are_named(tmp_path, mk):
    rec = mk("Q?").to_dict()
    del rec["steps"][0]["observation"]
    p = _jsonl(tmp_path, "a.jsonl", [json.dumps(mk("Q0?").to_dict()), json.dumps(rec)])
    with pytest.raises(DataError, match=r"a\.jsonl:2: steps\[0\]: field 'observation' missing"):
        read_file(p, "a")
    rec = mk("Q?").to_dict()
    rec["id"] = 7
    p = _jsonl(tmp_path, "b.jsonl", [json.dumps(rec)])
    with pytest.raises(DataError, match=r"b\.jsonl:1: field 'id' must be str, got int"):
        read_file(p, "b")


def test_wrong_layout_is_named(tmp_path):
    p = _jsonl(tmp_path, "c.jsonl", ['{"text": "hello"}'])
    with pytest.raises(DataError, match=r"c\.jsonl:1: unknown layout \(keys \['text'\]\)"):
        read_file(p, "c")


def test_alpaca_missing_field_and_unparseable_action(tmp_path):
    ok = {"instruction": "Q?", "input": "", "output": "Thought: a\nAction: finish[b]\n"}
    p = tmp_path / "d.json"
    p.write_text(json.dumps([ok, {"instruction": "Q2?", "input": ""}]))
    with pytest.raises(DataError, match=r"d\.json: record 1: field 'output' missing"):
        read_file(p, "d")
    p = tmp_path / "e.json.gz"
    with gzip.open(p, "wt") as f:
        json.dump([ok, ok | {"output": "Thought: hm\nAction: dance around\nObservation: x\n"}], f)
    with pytest.raises(DataError, match=r"e\.json\.gz: record 1: field 'output': no parseable action in 'Action: dance around'"):
        read_file(p, "e")
    p.unlink()
    p = _jsonl(tmp_path, "f.jsonl", [json.dumps(ok | {"output": "I just know: b"})])
    with pytest.raises(DataError, match=r"f\.jsonl:1: field 'output': no 'Action: name\[arg\]' line"):
        read_file(p, "f")


def test_gpt_layout_errors_name_the_message(tmp_path):
    msgs = [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "Thought: a\nAction: search[X]"},
            {"role": "assistant", "content": "Thought: b\nAction: finish[y]"}]
    p = _jsonl(tmp_path, "g.jsonl", [json.dumps({"messages": msgs})])
    with pytest.raises(DataError, match=r"g\.jsonl:1: field 'messages\[2\]\.role': expected 'user', got 'assistant'"):
        read_file(p, "g")
    p = _jsonl(tmp_path, "h.jsonl", [json.dumps({"messages": [msgs[0], {"role": "assistant", "content": "no idea"}]})])
    with pytest.raises(DataError, match=r"h\.jsonl:1: field 'messages\[1\]\.content': no parseable action"):
        read_file(p, "h")
    p = _jsonl(tmp_path, "i.jsonl", [json.dumps({"messages": [{"role": "user"}]})])
    with pytest.raises(DataError, match=r"i\.jsonl:1: messages\[0\]: field 'content' missing"):
        read_file(p, "i")


def test_missing_run_dir_and_unknown_fireact(tmp_path):
    with pytest.raises(DataError, match="trajectories.jsonl: no such file"):
        load_source(str(tmp_path))
    with pytest.raises(ValueError, match="unknown FireAct source 'fireact:nope'"):
        load_source("fireact:nope")
