"""A hostile user's inputs, table-driven: every command and reader answers a bad input with one line
``error: ...`` naming the file (and line or field) and exit 2, never a traceback; and a disk that
fills up at any byte of a run or a ``data build`` leaves files that the rerun resumes whole."""

from __future__ import annotations

import errno
import json
import os
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reactlab.cli import app

PAGES = [{"title": "Scott Derrickson", "text": ["Scott Derrickson is an American director."]}]
N = 12


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


class DiskFills:
    """Makes ``os.write`` to files under ``root`` fail with ENOSPC once ``budget`` bytes are written
    there (the write that crosses it writes its first bytes, as a real full disk does)."""

    def __init__(self, root: Path, budget: int):
        self.root, self.budget, self.real = root, budget, os.write

    def _ours(self, fd: int) -> bool:
        st = os.fstat(fd)
        return any((p.stat().st_dev, p.stat().st_ino) == (st.st_dev, st.st_ino)
                   for p in self.root.rglob("*") if p.is_file())

    def __call__(self, fd: int, data) -> int:
        if not self._ours(fd):
            return self.real(fd, data)
        if self.budget <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        n = self.real(fd, bytes(data[: self.budget]))
        self.budget -= n
        return n


@pytest.fixture
def run_inputs(tmp_path, monkeypatch):
    """A corpus, N questions with distinct answers and a scripted model that answers each."""
    monkeypatch.setenv("REACTLAB_HOME", str(tmp_path / "home"))
    corpus = tmp_path / "pages.jsonl"
    corpus.write_text("".join(json.dumps(d) + "\n" for d in PAGES))
    data = tmp_path / "q.jsonl"
    data.write_text("".join(json.dumps({"_id": f"q{i}", "question": f"Who is person{i}?", "answer": f"ans{i % 3}"})
                            + "\n" for i in range(N)))
    script = tmp_path / "script.json"
    script.write_text(json.dumps({f"person{i}?": f" I know.\nAction 1: Finish[ans{i % 4}]" for i in range(N)}))
    return ["--model", f"scripted:{script}", "--data", data, "--corpus", corpus, "--batch-size", 5, "-q"]


def _records(path: Path) -> list[dict]:
    lines = path.read_bytes().split(b"\n") if path.exists() else [b""]
    assert lines[-1] == b"", "the file must end on a whole record"
    return [json.loads(x) for x in lines[:-1]]


def test_a_run_killed_by_a_full_disk_at_any_byte_resumes_whole(tmp_path, run_inputs, monkeypatch):
    clean = tmp_path / "clean"
    assert invoke("run", *run_inputs, "--out", clean).exit_code == 0
    answers = {r["id"]: r["answer"] for r in _records(clean / "trajectories.jsonl")}
    assert len(answers) == N and len(set(answers.values())) > 1
    total = sum(p.stat().st_size for p in clean.iterdir())
    offsets = random.Random(36).sample(range(total), 20)
    for k, offset in enumerate(offsets):
        out = tmp_path / f"full{k}"
        out.mkdir()
        monkeypatch.setattr(os, "write", DiskFills(out, offset))
        res = invoke("run", *run_inputs, "--out", out)
        monkeypatch.undo()
        monkeypatch.setenv("REACTLAB_HOME", str(tmp_path / "home"))
        assert res.exit_code == 2, (offset, res.output)
        (line,) = res.output.splitlines()
        assert line.startswith(f"error: disk full writing {out}/") and line.endswith("free space and rerun to resume")
        kept = _records(out / "trajectories.jsonl")  # whole records only, before any repair
        if "trajectories.jsonl" in line:
            assert f"; {len(kept)} episodes kept;" in line
        res = invoke("run", *run_inputs, "--out", out)  # space freed: resume
        assert res.exit_code == 0, (offset, res.output)
        recs = _records(out / "trajectories.jsonl")
        assert len(recs) == N and {r["id"]: r["answer"] for r in recs} == answers, offset
        assert json.loads((out / "summary.json").read_text())["n"] == N


def test_a_data_build_killed_by_a_full_disk_at_any_byte_builds_whole_on_rerun(tmp_path, monkeypatch):
    args = ["data", "build", "--from", "fireact:hotpotqa", "--max-rows", "40", "--tokenizer", "none",
            "--val-frac", "0.1"]
    clean = tmp_path / "clean"
    res = invoke(*args, "--out", clean)
    assert res.exit_code == 0, res.output
    files = sorted(p.name for p in clean.iterdir())
    total = sum(p.stat().st_size for p in clean.iterdir())
    for k, offset in enumerate(random.Random(7).sample(range(total), 10)):
        out = tmp_path / f"full{k}"
        out.mkdir()
        monkeypatch.setattr(os, "write", DiskFills(out, offset))
        res = invoke(*args, "--out", out)
        monkeypatch.undo()
        assert res.exit_code == 2 and res.output.startswith(f"error: disk full writing {out}/"), res.output
        assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]  # no half-written file left
        assert invoke(*args, "--out", out).exit_code == 0
        assert sorted(p.name for p in out.iterdir()) == files
        for name in files:
            if name.endswith(".jsonl"):
                assert (out / name).read_bytes() == (clean / name).read_bytes()


DEEP = "[" * 5000 + "]" * 5000


@pytest.fixture
def hostile(tmp_path, monkeypatch):
    """Bad inputs of every kind, each in a file of its own; ``REACTLAB_HOME`` in the test's tmp."""
    monkeypatch.setenv("REACTLAB_HOME", str(tmp_path / "home"))
    q = {"_id": "a", "question": "Who?", "answer": "x"}
    files = {
        "deep.jsonl": json.dumps(q) + "\n" + '{"_id": "b", "question": "q", "answer": ' + DEEP + "}\n",
        "deep.json": "[" + json.dumps(q) + ", " + DEEP + "]",
        "deep100.jsonl": '{"_id": "b", "question": "q", "answer": "x", "meta": ' + "[" * 100 + "]" * 100 + "}\n",
        "surrogate.jsonl": json.dumps(q) + "\n" + '{"_id": "b", "question": "Who \\ud800?", "answer": "x"}\n',
        "surrogate.json": '[{"_id": "b", "question": "Who?", "answer": "x \\udfff"}]',
        "long.jsonl": json.dumps(q) + "\n" + json.dumps({**q, "_id": "b", "question": "x" * 30_000}) + "\n",
        "deep-first.jsonl": '{"question": "q", "steps": ' + DEEP + "}\n",
        "pages-deep.jsonl": json.dumps(PAGES[0]) + "\n" + '{"title": "T", "text": ' + DEEP + "}\n",
        "pages-surrogate.jsonl": '{"title": "T \\ud83d", "text": ["a."]}\n',
        "big.csv": "What is it?," + "x" * 200_000 + ",b,c,d,A\n",
        "null-content.jsonl": json.dumps({"messages": [
            {"role": "user", "content": "Q?"}, {"role": "assistant", "content": None},
            {"role": "user", "content": "Observation: x"}]}) + "\n",
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "binary.bin").write_bytes(bytes(range(200, 256)) * 4)
    bad = tmp_path / "bad-types-adapter"
    bad.mkdir()
    (bad / "adapter_config.json").write_text('{"peft_type": "LORA", "r": "abc", "target_modules": 5}')
    junk = tmp_path / "junk-adapter"
    junk.mkdir()
    (junk / "adapter_config.json").write_text('{"peft_type": "LORA", "r": 4}')
    (junk / "adapter_model.safetensors").write_bytes(b"\x07" * 64)
    (tmp_path / "ds").mkdir()  # a dataset dir whose rows are fine
    (tmp_path / "ds" / "train.jsonl").write_text('{"messages": [{"role": "user", "content": "q"}]}\n')
    run = tmp_path / "run-deep"
    run.mkdir()
    (run / "trajectories.jsonl").write_text('{"id": "a", "question": "q", "steps": ' + DEEP + "}\n")
    monkeypatch.setattr("reactlab.io.MAX_LINE_BYTES", 20_000)
    return tmp_path


@pytest.mark.parametrize(("args", "message"), [
    # nesting a few thousand deep, and deeper than any record needs, in every reader
    (["run", "--agent", "oracle", "--data", "{d}/deep.jsonl"], "{d}/deep.jsonl:2: JSON nested deeper than 64 levels"),
    (["run", "--agent", "oracle", "--data", "{d}/deep.json"], "{d}/deep.json: JSON nested deeper than 64 levels"),
    (["run", "--agent", "oracle", "--data", "{d}/deep100.jsonl"], "{d}/deep100.jsonl:1: JSON nested deeper than 64"),
    (["data", "build", "--from", "{d}/deep-first.jsonl", "--out", "{d}/ds"], "{d}/deep-first.jsonl:1: JSON nested deeper"),
    (["wiki", "build", "--corpus", "{d}/pages-deep.jsonl"], "{d}/pages-deep.jsonl:2: JSON nested deeper"),
    (["report", "{d}/run-deep", "-o", "{d}/r.html"], "{d}/run-deep/trajectories.jsonl:1: JSON nested deeper"),
    # text that is not valid Unicode: refused at load, with file:line and field
    (["run", "--agent", "oracle", "--data", "{d}/surrogate.jsonl"],
     "{d}/surrogate.jsonl:2: field 'question' holds \\ud800, a lone surrogate"),
    (["run", "--agent", "oracle", "--data", "{d}/surrogate.json"], "{d}/surrogate.json: field '[0].answer' holds"),
    (["wiki", "build", "--corpus", "{d}/pages-surrogate.jsonl"], "{d}/pages-surrogate.jsonl:1: field 'title' holds"),
    (["run", "--task", "mmlu", "--data", "{d}/big.csv"], "{d}/big.csv: not CSV that can be read (field larger than"),
    # a line longer than the readers take (the limit is lowered for the test)
    (["run", "--agent", "oracle", "--data", "{d}/long.jsonl"], "{d}/long.jsonl:2: line longer than 20,000 bytes"),
    # a chat message with content null (an assistant turn of tool calls)
    (["data", "build", "--from", "{d}/null-content.jsonl", "--out", "{d}/ds", "--tokenizer", "none"],
     "{d}/null-content.jsonl:1: messages[1]: field 'content' must be str, got NoneType"),
    # layout options the format does not have, or values it cannot take
    (["data", "build", "--from", "fireact:hotpotqa", "--out", "{d}/ds", "--format", "openai", "--option", "bogus=1"],
     "--option bogus: not an option of format 'openai' (its options: skip_invalid)"),
    (["data", "build", "--from", "fireact:hotpotqa", "--out", "{d}/ds", "--format", "sharegpt", "--option", "bogus=1"],
     "--option bogus: not an option of format 'sharegpt' (its options: observation_role)"),
    (["data", "build", "--from", "fireact:hotpotqa", "--out", "{d}/ds", "--format", "openai", "--option",
      "skip_invalid=maybe"], "--option skip_invalid='maybe': must be true or false"),
    (["data", "build", "--from", "fireact:hotpotqa", "--out", "{d}/ds", "--format", "dpo", "--option",
      "pairs_per_question=0"], "--option pairs_per_question=0: must be in [1, 1000]"),
    # numbers that cannot work: the range is in the message, checked before any work
    (["train", "sft", "-c", "out={d}/o", "-c", "lora.r=100000"], "lora.r: Input should be less than or equal to 1024"),
    (["train", "grpo", "-c", "out={d}/o", "-c", "num_generations=100000"],
     "num_generations: Input should be less than or equal to 256"),
    (["run", "--batch-size", "10000000", "--agent", "oracle"], "batch_size: Input should be less than or equal to"),
    (["run", "--max-steps", "1000000", "--agent", "oracle"], "max_steps: Input should be less than or equal to 1000"),
    (["budget", "build", "--from", "x", "--out", "{d}/b", "--n-buckets", "1000000000"],
     "Invalid value for '--n-buckets': Input should be less than or equal to 100"),
    (["budget", "build", "--from", "x", "--out", "{d}/b", "--buckets", "90,60"],
     "--buckets '90,60': 1 to 99 increasing positive token counts"),
    (["serve", "scripted:x.json", "--max-tokens", "100000000"], "Invalid value for '--max-tokens'"),
    (["budget", "predict", "-p", "mean", "--file", "{d}/binary.bin"], "{d}/binary.bin: not UTF-8 text"),
    (["cache", "clear", "everything"], "cache clear 'everything': expected wiki, models or all"),
    # TRL arguments of the wrong type, before any model loads
    (["train", "sft", "-c", "data.path={d}/ds", "-c", "out={d}/o", "-c", "trl.num_train_epochs=abc"],
     "trl.num_train_epochs: expected float, got 'abc'"),
    (["train", "sft", "-c", "data.path={d}/ds", "-c", "out={d}/o", "-c", "trl.bf16=maybe"],
     "trl.bf16: expected bool | None, got 'maybe'"),
    # adapters and weights that cannot be what they say, in every command that loads them
    (["run", "--model", "hf:{tiny}", "--adapter", "{d}/bad-types-adapter", "--limit", "1"],
     "{d}/bad-types-adapter/adapter_config.json: field 'r' must be int, got str"),
    (["export", "--model", "{tiny}", "--adapter", "{d}/bad-types-adapter", "--out", "{d}/ex"],
     "{d}/bad-types-adapter/adapter_config.json: field 'r' must be int, got str"),
    (["serve", "hf:{tiny}", "--adapter", "{d}/bad-types-adapter", "--port", "0"],
     "{d}/bad-types-adapter/adapter_config.json: field 'r' must be int, got str"),
    (["export", "--model", "{tiny}", "--adapter", "{d}/junk-adapter", "--out", "{d}/ex"],
     "{d}/junk-adapter/adapter_model.safetensors: not a safetensors file (header length"),
    (["export", "--model", "{d}/junk-model", "--out", "{d}/ex"], "{d}/junk-model/model.safetensors: not a safetensors file"),
    (["run", "--model", "hf:{d}/junk-model", "--limit", "1"], "{d}/junk-model/model.safetensors: not a safetensors file"),
])
def test_bad_inputs_of_every_command_are_one_line_errors(hostile, tiny_model_dir, args, message):
    junk = hostile / "junk-model"
    if not junk.exists():
        junk.mkdir()
        for f in Path(tiny_model_dir).glob("*.json"):
            (junk / f.name).write_bytes(f.read_bytes())
        (junk / "model.safetensors").write_bytes(b"\xff" * 1000)
    args = [a.format(d=hostile, tiny=tiny_model_dir) for a in args]
    if args[0] == "run":
        args += ["--out", str(hostile / "out"), "-q"]
    res = invoke(*args)
    assert res.exit_code == 2, res.output
    assert message.format(d=hostile) in res.output and "Traceback" not in res.output, res.output
    assert len([x for x in res.output.splitlines() if x.strip()]) == 1 or "Usage:" in res.output, res.output
    assert not (hostile / "ds" / "stats.json").exists() and not (hostile / "out" / "trajectories.jsonl").exists()
    assert not (hostile / "ex").exists() and not (hostile / "o").exists()


def test_a_dataset_row_with_null_content_is_shown(tmp_path):
    """``content: null`` (an assistant turn of tool calls) renders as an empty turn, through the chat
    template too; a row that is not of its format is a one-line error with file:line."""
    ds = tmp_path / "ds"
    ds.mkdir()
    msgs = [{"role": "user", "content": "q"}, {"role": "assistant", "content": None},
            {"role": "user", "content": "more"}, {"role": "assistant", "content": "done"}]
    (ds / "train.jsonl").write_text(json.dumps({"messages": msgs}) + "\n")
    for tokenizer in ("none", "smollm2"):
        res = invoke("data", "show", ds, "--tokenizer", tokenizer)
        assert res.exit_code == 0 and "more" in res.output and "done" in res.output, res.output
    (ds / "train.jsonl").write_text(json.dumps({"messages": [{"content": "no role"}]}) + "\n")
    res = invoke("data", "show", ds, "--tokenizer", "none")
    assert res.exit_code == 2 and f"{ds}/train.jsonl:1: not a messages row (KeyError: 'role')" in res.output, res.output
