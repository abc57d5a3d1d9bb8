"""The reactlab command end to end (in-process through typer's runner)."""

import json

import pytest
from typer.testing import CliRunner

from reactlab.cli import app

PAGES = [
    {"title": "Scott Derrickson", "text": ["Scott Derrickson (born July 16, 1966) is an American director.", "He lives in Los Angeles."]},
    {"title": "Ed Wood", "text": ["Edward Davis Wood Jr. was an American filmmaker."]},
]


@pytest.fixture
def corpus(tmp_path, monkeypatch):
    monkeypatch.setenv("REACTLAB_HOME", str(tmp_path / "home"))
    p = tmp_path / "pages.jsonl"
    p.write_text("".join(json.dumps(d) + "\n" for d in PAGES))
    return p


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_wiki_build_stats_search(corpus):
    res = invoke("wiki", "build", "--corpus", corpus)
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["pages"] == 2
    assert json.loads(invoke("wiki", "stats", "--corpus", corpus).output)["pages"] == 2
    res = invoke("wiki", "search", "Scott Derrickson", "--corpus", corpus)
    assert res.output == "Scott Derrickson (born July 16, 1966) is an American director. He lives in Los Angeles.\n"
    res = invoke("wiki", "search", "Derrickson films", "--corpus", corpus)
    assert res.output == "Could not find Derrickson films. Similar: ['Scott Derrickson'].\n"


def test_malformed_corpus_names_file_and_line(corpus, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(PAGES[0]) + "\n" + '{"text": ["no title"]}\n')
    res = invoke("wiki", "build", "--corpus", bad)
    assert res.exit_code == 2
    assert f"{bad}:2" in res.output and "title" in res.output


def test_react_run_with_a_scripted_model_file(corpus, tmp_path):
    data = tmp_path / "q.json"
    data.write_text(json.dumps([{"_id": "a", "question": "Who is Scott Derrickson?", "answer": "director", "type": "bridge"}]))
    script = tmp_path / "script.json"
    script.write_text(json.dumps([" Search him.\nAction 1: Search[Scott Derrickson]", " Found.\nAction 2: Finish[director]"]))
    out = tmp_path / "run"
    res = invoke("run", "--model", f"scripted:{script}", "--data", data, "--corpus", corpus, "--out", out, "-q")
    assert res.exit_code == 0, res.output
    assert "EM=1.000" in res.output
    (traj,) = [json.loads(x) for x in (out / "trajectories.jsonl").read_text().splitlines()]
    assert traj["steps"][0]["observation"].startswith("Scott Derrickson (born July 16, 1966)")
    assert traj["model"] == f"scripted:{script}" and traj["prompt_id"] == "hotpotqa_react@1/react"


def test_react_without_a_model_is_a_clear_error(tmp_path):
    res = invoke("run", "--agent", "react", "--split", "eval", "--limit", "1", "--out", tmp_path / "o")
    assert res.exit_code == 2 and "needs --model" in res.output


def test_run_options_from_a_yaml_file_flags_and_overrides(corpus, tmp_path):
    """`reactlab run` reads a RunConfig: a YAML file, then the flags, then -c KEY=VALUE, in that order."""
    data = tmp_path / "q.json"
    data.write_text(json.dumps([{"_id": f"q{i}", "question": "Who is Scott Derrickson?", "answer": "director"}
                                for i in range(3)]))
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"Scott": " Found.\nAction 1: Finish[director]"}))
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"model: scripted:{script}\ndata: {data}\nlimit: 1\nmax_steps: 3\nout: {tmp_path / 'from-yaml'}\n")
    res = invoke("run", "-c", cfg, "--corpus", corpus, "--limit", 2, "-c", f"out={tmp_path / 'run'}", "-q")
    assert res.exit_code == 0, res.output
    assert "n=2  EM=1.000" in res.output  # --limit beat the file; -c out= beat the file
    assert not (tmp_path / "from-yaml").exists() and (tmp_path / "run/summary.json").is_file()


@pytest.mark.parametrize(("args", "message"), [
    (["--limit", "0"], "limit: Input should be greater than or equal to 1"),
    (["--batch-size", "-5"], "batch_size: Input should be greater than or equal to 1"),
    (["--style", "fancy"], "style: Input should be 'completion', 'chat' or 'tools'"),
    (["-c", "limt=3"], "limt: unknown key"),
    (["--model", "smollm"], "model spec 'smollm' is not understood"),
    (["--task", "nope"], "unknown task 'nope'"),
])
def test_bad_run_options_are_one_line_errors(tmp_path, args, message):
    res = invoke("run", "--out", tmp_path / "o", *args)
    assert res.exit_code == 2 and message in res.output, res.output
    assert "Traceback" not in res.output and not (tmp_path / "o").exists()


@pytest.fixture
def bad_inputs(tmp_path):
    """Files a user might hand the commands by mistake."""
    (tmp_path / "bad.json.gz").write_bytes(b"not gzip at all")
    (tmp_path / "empty.json").write_text("[]")
    (tmp_path / "binary.json").write_bytes(bytes(range(200, 256)) * 4)
    (tmp_path / "recipe.yaml").write_bytes(bytes(range(200, 256)))
    (tmp_path / "short.json").write_text('["only one"]')
    (tmp_path / "q2.json").write_text(json.dumps([{"question": "a?", "answer": "x"}, {"question": "b?", "answer": "y"}]))
    junk = tmp_path / "junk-adapter"
    junk.mkdir()
    (junk / "adapter_config.json").write_text('{"peft_type": "LORA", "r": 4}')
    (junk / "adapter_model.safetensors").write_bytes(b"\xff" * 64)
    cfg = tmp_path / "bad-config-adapter"
    cfg.mkdir()
    (cfg / "adapter_config.json").write_text("not json{")
    return tmp_path


@pytest.mark.parametrize(("args", "message"), [
    (["run", "--agent", "oracle", "--data", "{d}/bad.json.gz"], "bad.json.gz: cannot read (Not a gzipped file"),
    (["run", "--agent", "oracle", "--data", "{d}/empty.json"], "empty.json: no examples to run"),
    (["run", "--agent", "oracle", "--data", "{d}/binary.json"], "binary.json: not UTF-8 text"),
    (["run", "--model", "hf:/nonexistent/model", "--limit", "1"], "model directory not found: /nonexistent/model"),
    (["run", "--model", "hf:{tiny}", "--adapter", "{d}/junk-adapter", "--limit", "1"],
     "junk-adapter/adapter_model.safetensors: not a safetensors file"),
    (["run", "--model", "hf:{tiny}", "--adapter", "{d}/bad-config-adapter", "--limit", "1"],
     "bad-config-adapter/adapter_config.json: not a JSON adapter config"),
    (["run", "--model", "scripted:{d}/short.json", "--data", "{d}/q2.json"], "ScriptedLLM 'scripted' ran out"),
    (["train", "sft", "-c", "{d}/recipe.yaml"], "recipe.yaml: not a YAML text file"),
    (["data", "build", "--from", "{d}/binary.json", "--out", "{d}/ds"], "binary.json: not UTF-8 text"),
    (["export", "--model", "/nonexistent", "--out", "{d}/ex"], "base '/nonexistent' is neither a named model"),
])
def test_bad_inputs_are_one_line_errors(bad_inputs, tiny_model_dir, args, message):
    args = [a.format(d=bad_inputs, tiny=tiny_model_dir) for a in args]
    if args[0] == "run":
        args += ["--out", str(bad_inputs / "out"), "-q"]
    res = invoke(*args)
    assert res.exit_code == 2, res.output
    assert message in res.output and "Traceback" not in res.output, res.output
    assert len([x for x in res.output.splitlines() if x.startswith("error:")]) == 1


def test_wiki_search_shows_control_characters_escaped(corpus):
    res = invoke("wiki", "search", "\x1b[31mred\x1b[0m", "--corpus", corpus)
    assert res.exit_code == 0 and "\x1b" not in res.output and "\\x1b[31mred" in res.output


@pytest.mark.parametrize(("args", "message"), [
    (["data", "build", "--from", "fireact:hotpotqa", "--out", "{d}/ds", "--max-steps", "-1", "--tokenizer", "none"],
     "max_steps must be >= 1"),
    (["data", "build", "--from", "fireact:hotpotqa", "--out", "{d}/ds", "--min-f1", "2", "--tokenizer", "none"],
     "min_f1 must be in [0, 1]"),
    (["data", "build", "--from", "fireact:hotpotqa", "--out", "{d}/ds", "--val-frac", "2", "--tokenizer", "none"],
     "val_frac must be in [0, 1)"),
    (["data", "show", "{d}/ds", "--n", "0"], "Invalid value for '--n'"),
    (["serve", "scripted:x.json", "--port", "-5"], "Invalid value for '--port'"),
    (["demo", "--train-rows", "-3", "--out", "{d}/demo"], "--train-rows must be >= 1"),
    (["export", "--model", "smollm2", "--gguf", "bogus", "--out", "{d}/ex"], "unknown GGUF type(s) ['bogus']"),
    (["train", "sft", "-c", "out={d}/o", "-c", "lora.r=0"], "lora.r: Input should be greater than or equal to 1"),
])
def test_bad_arguments_of_every_command_exit_2(tmp_path, args, message):
    res = invoke(*[a.format(d=tmp_path) for a in args])
    assert res.exit_code == 2 and message in res.output and "Traceback" not in res.output, res.output
    assert not (tmp_path / "ds").exists() and not (tmp_path / "demo").exists()


def test_debug_shows_the_traceback_of_a_user_error(tmp_path, monkeypatch):
    from reactlab.errors import DEBUG_ENV
    from reactlab.io import DataError

    monkeypatch.setenv(DEBUG_ENV, "0")  # restored after the test, whatever --debug sets
    (tmp_path / "empty.json").write_text("[]")
    args = ["run", "--agent", "oracle", "--data", tmp_path / "empty.json", "--out", tmp_path / "o"]
    res = invoke(*args)
    assert res.exit_code == 2 and res.exception is not None and "no examples to run" in res.output
    res = invoke("--debug", *args)
    assert isinstance(res.exception, DataError) and "no examples to run" in str(res.exception)


def test_cache_list_clear_and_lru_eviction_of_wiki_indexes(corpus, tmp_path, monkeypatch):
    """Each corpus leaves an index in the cache; past the cap the least recently used go, never the
    one just built; `reactlab cache list|clear` shows and removes them; --help names the cache."""
    import os
    import time

    home = tmp_path / "home"
    assert "reactlab cache" in invoke("--help").output and "cache" in invoke("cache", "--help").output
    others = []
    for i in range(3):
        p = tmp_path / f"pages{i}.jsonl"
        p.write_text(json.dumps({"title": f"Page {i}", "text": [f"Text number {i}."]}) + "\n")
        others.append(p)
    assert invoke("wiki", "build", "--corpus", others[0]).exit_code == 0
    assert invoke("wiki", "build", "--corpus", others[1]).exit_code == 0
    dbs = sorted((home / "wiki").glob("*.sqlite"), key=lambda p: p.stat().st_mtime)
    assert len(dbs) == 2
    old = time.time() - 3600
    os.utime(dbs[1], (old, old))  # the second built is now the least recently used
    res = invoke("cache", "list")
    assert res.exit_code == 0 and res.output.splitlines()[0].endswith(str(dbs[1])), res.output
    assert "2 entries" in res.output
    size = dbs[0].stat().st_size
    monkeypatch.setenv("REACTLAB_CACHE_MAX_MB", str(2.5 * size / 1e6))  # room for two indexes
    assert invoke("wiki", "build", "--corpus", others[2]).exit_code == 0
    left = set((home / "wiki").glob("*.sqlite"))
    assert len(left) == 2 and dbs[1] not in left and dbs[0] in left
    assert invoke("wiki", "search", "Page 0", "--corpus", others[0]).exit_code == 0  # still there: no rebuild
    monkeypatch.setenv("REACTLAB_CACHE_MAX_MB", "lots")
    res = invoke("wiki", "build", "--corpus", others[1])
    assert res.exit_code == 2 and "$REACTLAB_CACHE_MAX_MB='lots': expected a number of MB" in res.output
    monkeypatch.delenv("REACTLAB_CACHE_MAX_MB")
    res = invoke("cache", "clear", "wiki")
    assert res.exit_code == 0 and res.output.startswith("removed 2 entries")
    assert not list((home / "wiki").glob("*"))
