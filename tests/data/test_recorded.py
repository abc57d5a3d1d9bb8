"""``data build --from`` a ``serve --record`` dir: one messages row per conversation (its last exchange),
rewards/labels joined by conversation id, bad input reported as file:line with exit 2."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from reactlab.data.cli import data_app
from reactlab.data.recorded import build_recorded, read_exchanges
from reactlab.serve.record import Recorder

TOOLS = [{"type": "function", "function": {"name": "search", "parameters": {
    "type": "object", "properties": {"entity": {"type": "string"}}}}}]
CALL = {"id": "call_1", "type": "function", "function": {"name": "search", "arguments": '{"entity": "X"}'}}


def record(directory, conversations):
    """Record each conversation's turns as the server does: every request resends the history."""
    rec = Recorder(directory)
    for cid, turns in conversations.items():
        history: list = [{"role": "system", "content": "sys"}, {"role": "user", "content": turns[0]}]
        for reply in turns[1:]:
            message = reply if isinstance(reply, dict) else {"role": "assistant", "content": reply}
            rec.record(cid, {"messages": list(history), "tools": TOOLS, "temperature": 0}, message,
                       "tool_calls" if "tool_calls" in message else "stop", {"prompt_tokens": 1})
            history.append(message)
            if "tool_calls" in message:
                history.append({"role": "tool", "tool_call_id": "call_1", "content": "X is a letter."})
    rec.close()
    return rec.path


def build(tmp_path, **kw):
    return build_recorded([str(tmp_path / "rec")], tmp_path / "out", exclude_splits=kw.pop("exclude_splits", []),
                          val_frac=0.0, **kw)


def rows(tmp_path):
    return [json.loads(line) for line in (tmp_path / "out" / "train.jsonl").read_text().splitlines()]


def test_the_last_exchange_of_each_conversation_is_a_row(tmp_path):
    tool_turn = {"role": "assistant", "content": None, "tool_calls": [CALL]}
    record(tmp_path / "rec", {"a": ["What is X?", tool_turn, "A letter."], "b": ["Who?", "Nobody."]})
    stats = build(tmp_path)
    assert stats["rows"] == {"train": 2, "val": 0} and stats["conversations"] == 2 and stats["tool_calls"] == 1
    a, b = rows(tmp_path)
    assert [m["role"] for m in a["messages"]] == ["system", "user", "assistant", "tool", "assistant"]
    assert a["messages"][2]["tool_calls"][0]["function"]["arguments"] == {"entity": "X"}  # as templates take it
    assert a["messages"][3] == {"role": "tool", "content": "X is a letter.", "tool_call_id": "call_1"}
    assert a["messages"][4] == {"role": "assistant", "content": "A letter."}
    assert (a["tools"], a["conversation_id"], a["source"]) == (TOOLS, "a", "rec")
    assert [m["content"] for m in b["messages"]] == ["sys", "Who?", "Nobody."]


def test_rewards_and_labels_join_by_conversation_id(tmp_path):
    record(tmp_path / "rec", {c: ["q " + c, "r"] for c in "abcde"})
    labels = tmp_path / "labels.jsonl"
    labels.write_text("\n".join(json.dumps(x) for x in [
        {"conversation_id": "a", "reward": 1}, {"conversation_id": "b", "reward": 0.4},
        {"conversation_id": "c", "label": True}, {"conversation_id": "d", "label": False}]) + "\n")
    stats = build(tmp_path, labels=labels)
    assert [(r["conversation_id"], r["reward"]) for r in rows(tmp_path)] == [("a", 1.0), ("c", 1.0)]
    assert stats["dropped"] == {"low_reward": 2, "unlabelled": 1}
    build(tmp_path, labels=labels, min_reward=0.3)
    assert [r["conversation_id"] for r in rows(tmp_path)] == ["a", "b", "c"]


def test_evaluation_questions_are_dropped_by_default(tmp_path):
    from reactlab.tasks import make_task

    question = make_task("hotpotqa").examples("eval")[0].question
    record(tmp_path / "rec", {"a": [question, "r"], "b": ["a question of my own", "r"]})
    stats = build(tmp_path, exclude_splits=None)
    assert stats["dropped"] == {"excluded": 1} and [r["conversation_id"] for r in rows(tmp_path)] == ["b"]


def test_a_torn_last_line_is_skipped(tmp_path):
    path = record(tmp_path / "rec", {"a": ["q", "r1", "r2"]})
    with path.open("ab") as f:
        f.write(b'{"conversation_id": "a", "request": {"mess')
    exchanges, torn = read_exchanges(tmp_path / "rec")
    assert (len(exchanges), torn) == (2, 1)
    assert build(tmp_path)["torn_lines"] == 1 and rows(tmp_path)[0]["messages"][-1]["content"] == "r2"


@pytest.mark.parametrize("line, message", [
    ("{not json", ":2: invalid JSON"),
    ('{"request": {}}', ":2: not a recorded exchange"),
    ('{"conversation_id": "a", "request": {"messages": []}, "reply": {}}', ":2: a recorded exchange needs"),
    ('{"conversation_id": "a", "request": {"messages": [{"role": "user", "content": 3}]}, '
     '"reply": {"message": {"role": "assistant", "content": "x"}}}', ":2: messages[0].content must be a string"),
])
def test_a_bad_record_is_one_line_with_file_and_line(tmp_path, line, message):
    path = record(tmp_path / "rec", {"a": ["q", "r"]})
    with path.open("a") as f:
        f.write(line + "\n")
    res = CliRunner().invoke(data_app, ["build", "--from", str(tmp_path / "rec"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and f"{path.name}{message}" in res.output and "Traceback" not in res.output


def test_the_cli_builds_rows_and_refuses_mixed_options(tmp_path):
    record(tmp_path / "rec", {"a": ["q a", "r"], "b": ["q b", "r"]})
    labels = tmp_path / "labels.jsonl"
    labels.write_text('{"conversation_id": "a", "label": true}\n{"conversation_id": "b", "reward": "high"}\n')
    args = ["build", "--from", str(tmp_path / "rec"), "--out", str(tmp_path / "o")]
    res = CliRunner().invoke(data_app, [*args, "--labels", str(labels)])
    assert res.exit_code == 2 and "labels.jsonl:2: needs one of 'reward'" in res.output
    labels.write_text('{"conversation_id": "a", "label": true}\n')
    res = CliRunner().invoke(data_app, [*args, "--labels", str(labels)])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["rows"] == {"train": 1, "val": 0}
    res = CliRunner().invoke(data_app, [*args, "--option", "min_reward=high"])
    assert res.exit_code == 2 and "min_reward=high: expected a number" in res.output
    res = CliRunner().invoke(data_app, [*args, "--format", "dpo"])
    assert res.exit_code == 2 and "builds `messages` rows alone" in res.output
    res = CliRunner().invoke(data_app, ["build", "--from", str(tmp_path), "--out", str(tmp_path / "o"),
                                        "--labels", str(labels)])
    assert res.exit_code == 2 and "builds `messages` rows alone" in res.output


def test_token_stats_count_the_rendered_tools(tmp_path):
    """With a tokenizer, stats count each row as the model is trained on it: tools and calls rendered."""
    from reactlab.data.build import count_tokens
    from reactlab.data.masking import load_tokenizer

    tool_turn = {"role": "assistant", "content": None, "tool_calls": [CALL]}
    record(tmp_path / "rec", {"a": ["What is X?", tool_turn, "A letter."]})
    tok = load_tokenizer("smollm2")
    stats = build(tmp_path, tokenizer=tok)
    (row,) = rows(tmp_path)
    n = count_tokens(tok, row, "messages-tools")
    assert stats["tokens"]["max"] == stats["tokens"]["total"] == n
    assert n > count_tokens(tok, row | {"tools": []}, "messages-tools")  # the schemas are in the count
    assert "tokens" not in build(tmp_path)
