"""Files in and out: a file that is not what its name says is a one-line error naming it; a write
that fails (full disk, read-only place) names the file and leaves what was written whole."""

from __future__ import annotations

import errno
import json
import os

import pytest

from reactlab import io
from reactlab.io import DataError, JsonlAppender, OutputError, read_records, write_text_atomic


def _no_space(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_failed_append_cuts_its_partial_line_off(tmp_path, monkeypatch):
    path = tmp_path / "t.jsonl"
    with JsonlAppender(path) as out:
        out.append({"id": "a"})
        monkeypatch.setattr(io.os, "fsync", _no_space)
        with pytest.raises(OutputError, match=rf"disk full writing {path}; .*free space and rerun to resume"):
            out.append({"id": "b", "text": "x" * 10_000})
    assert [json.loads(x) for x in path.read_text().splitlines()] == [{"id": "a"}]


def test_a_failed_atomic_write_names_the_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    path = tmp_path / "summary.json"
    write_text_atomic(path, "old\n")
    monkeypatch.setattr(io.os, "fsync", _no_space)
    with pytest.raises(OutputError, match=rf"^disk full writing {path}; the file left as it was; free space"):
        write_text_atomic(path, "new\n")
    assert path.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_a_place_that_cannot_be_written_is_named(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OutputError, match=rf"cannot write {blocker}/x/out.json"):
        write_text_atomic(blocker / "x" / "out.json", "{}")  # a file where a directory must go


@pytest.mark.parametrize(("name", "content", "message"), [
    ("bad.json.gz", b"not gzip at all", r"bad.json.gz: cannot read \(Not a gzipped file"),
    ("binary.json", bytes(range(200, 256)) * 4, r"binary.json: not UTF-8 text .*is it a binary file"),
    ("trunc.jsonl", b'{"question": "q", "answer": "a"}\n{"question": ', r"trunc.jsonl:2: invalid JSON"),
])
def test_a_file_that_is_not_what_it_says_is_a_data_error(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        list(read_records(path))


class _FullAfter:
    """``os.write`` that writes ``budget`` bytes, then fails with ENOSPC (a short write first, as a
    real full disk does)."""

    def __init__(self, budget):
        self.budget, self.real = budget, os.write

    def __call__(self, fd, data):
        if self.budget <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        n = self.real(fd, bytes(data[: self.budget]))
        self.budget -= n
        return n


def test_a_full_disk_mid_record_leaves_whole_records_even_after_close(tmp_path, monkeypatch):
    """The torn record is cut off and nothing buffered is written after that, at close."""
    path = tmp_path / "t.jsonl"
    with io.JsonlAppender(path, kept=0, noun="episodes") as out:
        out.append({"id": "a"})
        monkeypatch.setattr(io.os, "write", _FullAfter(100))
        with pytest.raises(OutputError, match=rf"^disk full writing {path}; 1 episodes kept; free space and rerun"):
            out.append({"id": "b", "text": "x" * 10_000})
    with JsonlAppender(path, kept=1) as again, pytest.raises(OutputError, match="disk full"):
        again.append({"id": "c", "text": "y" * 10_000})  # a second writer on the full disk: still whole
    monkeypatch.undo()
    assert path.read_text() == '{"id": "a"}\n'


def test_resume_drops_a_torn_tail_and_a_last_line_that_is_not_json(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"id": "a"}\n{"id": "b"}\n"text": "the tail of a torn record"}\n')
    assert io.read_jsonl_tolerant(path) == [{"id": "a"}, {"id": "b"}]
    assert path.read_text() == '{"id": "a"}\n{"id": "b"}\n'
    path.write_text('{"id": "a"}\n{oops\n{"id": "b"}\n')
    with pytest.raises(DataError, match=r"t.jsonl:2: invalid JSON"):
        io.read_jsonl_tolerant(path)


def test_a_lone_surrogate_is_written_escaped_not_lost(tmp_path):
    path = tmp_path / "t.jsonl"
    with io.JsonlAppender(path) as out:
        out.append({"id": "a", "answer": "x\ud800"})
    assert io.read_jsonl_tolerant(path) == [{"id": "a", "answer": "x\ud800"}]


@pytest.mark.parametrize(("text", "message"), [
    ("[" * 3000 + "]" * 3000 + "\n", r"d.jsonl:1: JSON nested deeper than 64 levels"),
    ('{"a": ' + "[" * 70 + "]" * 70 + "}\n", r"d.jsonl:1: JSON nested deeper than 64 levels"),
    ('{"a": {"b": ["ok", "\\udc00"]}}\n', r"d.jsonl:1: field 'a.b\[1\]' holds \\udc00, a lone surrogate"),
    ('{"\\ud800": 1}\n', r"d.jsonl:1: field '\\ud800' holds \\ud800"),
])
def test_readers_refuse_deep_nesting_and_lone_surrogates_with_file_line_and_field(tmp_path, text, message):
    path = tmp_path / "d.jsonl"
    path.write_text(text)
    with pytest.raises(DataError, match=message):
        list(io.iter_jsonl(path))


def test_valid_surrogate_pairs_and_moderate_nesting_are_fine(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"q": "smile \\ud83d\\ude00", "deep": ' + "[" * 60 + "]" * 60 + "}\n")
    ((_, rec),) = io.iter_jsonl(path)
    assert rec["q"] == "smile \U0001F600"
