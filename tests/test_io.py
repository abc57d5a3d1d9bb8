"""Files in and out: a file that is not what its name says is a one-line error naming it; a write
that fails (full disk, read-only place) names the file and leaves what was written whole."""

from __future__ import annotations

import errno
import json
import os

import pytest

from reactlab import io
from reactlab.io import DataError, OutputError, append_jsonl, read_records, write_text_atomic


def _no_space(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_failed_append_cuts_its_partial_line_off(tmp_path, monkeypatch):
    path = tmp_path / "t.jsonl"
    with open(path, "a", encoding="utf-8") as f:
        append_jsonl(f, {"id": "a"})
        monkeypatch.setattr(io.os, "fsync", _no_space)
        with pytest.raises(OutputError, match=rf"cannot write {path}: No space left on device"):
            append_jsonl(f, {"id": "b", "text": "x" * 10_000})
    assert [json.loads(x) for x in path.read_text().splitlines()] == [{"id": "a"}]


def test_a_failed_atomic_write_names_the_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    path = tmp_path / "summary.json"
    write_text_atomic(path, "old\n")
    monkeypatch.setattr(io.os, "fsync", _no_space)
    with pytest.raises(OutputError, match=rf"cannot write {path}: No space left on device"):
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
