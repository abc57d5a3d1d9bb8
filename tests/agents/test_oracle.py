import json

import pytest
from typer.testing import CliRunner

from reactlab.agents.oracle import OracleAgent, bridge_order, lookup_plan
from reactlab.cli import app
from reactlab.envs.wikienv import WikiEnv
from reactlab.runner import RunSpec, run
from reactlab.tasks.hotpotqa import HotpotQA
from reactlab.types import Example
from reactlab.wiki.corpus import pages_from_contexts
from reactlab.wiki.index import WikiIndex, build_index

FILLER = [f"Zorblax Quentin liked item number {k}." for k in range(1, 6)]
SYNTH = {
    "_id": "synth-1",
    "question": "In which city was the mentor of Zorblax Quentin born?",
    "answer": "Vellmora",
    "type": "bridge",
    "level": "hard",
    # the bridge sentence is the 7th of its page: only a lookup reaches it
    "supporting_facts": [["Zorblax Quentin", 6], ["Ambrosine Tulk", 1]],
    "context": [
        ["Zorblax Quentin", ["Zorblax Quentin is a fictional painter.", *FILLER, "His mentor was Ambrosine Tulk."]],
        ["Ambrosine Tulk", ["Ambrosine Tulk was a sculptor.", " She was born in Vellmora."]],
        ["Unrelated Page", ["Nothing to see."]],
    ],
}


def drive(agent, ex, env):
    gen = agent.episode(ex, env)
    try:
        next(gen)
    except StopIteration as stop:
        return stop.value
    raise AssertionError("the oracle must not ask an LLM")


def test_oracle_on_the_eval_split_through_the_vendored_index(vendored_index, tmp_path):
    """The foundation's end-to-end check: every gold trajectory is grounded in real observations."""
    task = HotpotQA()
    exs = task.examples("eval")
    spec = RunSpec("hotpotqa", "eval", "oracle", "oracle", "oracle@1")
    s = run(exs, OracleAgent(), task, lambda: WikiEnv(vendored_index), tmp_path, spec, progress=False)
    assert s.n == 491 and s.main >= 0.97
    rows = [json.loads(x) for x in (tmp_path / "trajectories.jsonl").read_text().splitlines()]
    for r in rows:
        if r["scores"]["em"] == 1.0:  # a hit is grounded: its answer came after real observations
            assert "oracle_miss" not in r["meta"] and r["steps"][-1]["action"] == {"name": "finish", "arg": r["gold"]}
            assert all(not s["observation"].startswith("Could not find") for s in r["steps"])


def test_lookup_reaches_a_late_supporting_sentence(tmp_path):
    ex = HotpotQA().examples(data=_write(tmp_path, [SYNTH]))[0]
    idx = WikiIndex.open(build_index(pages_from_contexts([ex]), tmp_path / "w.sqlite"))
    t = drive(OracleAgent(), ex, WikiEnv(idx))
    names = [s.action.name for s in t.steps]
    assert names == ["search", "lookup", "search", "finish"]
    assert t.steps[1].observation == "(Result 1 / 1) His mentor was Ambrosine Tulk."
    assert t.steps[1].action.arg == "Ambrosine Tulk"  # the next entity is the natural keyword
    assert t.answer == "Vellmora" and "oracle_miss" not in t.meta


def test_a_missing_page_is_a_miss_with_a_reason(tmp_path):
    ex = HotpotQA().examples(data=_write(tmp_path, [SYNTH]))[0]
    pages = [p for p in pages_from_contexts([ex]) if p.title != "Ambrosine Tulk"]
    idx = WikiIndex.open(build_index(pages, tmp_path / "w.sqlite"))
    t = drive(OracleAgent(), ex, WikiEnv(idx))
    assert t.answer == "" and t.meta["oracle_miss"] == ["page not found: 'Ambrosine Tulk'"]


def test_bridge_and_comparison_order():
    ex = Example("x", "Who directed the film starring B?", "z", "bridge", {
        "supporting_facts": [["Film C", 0], ["B", 0]],
        "context": [["Film C", ["Film C was directed by Z."]], ["B", ["B starred in Film C."]]],
    })
    assert bridge_order(ex) == ["B", "Film C"]  # B's sentence mentions Film C: B leads there
    cmp_ = Example("y", "Is Alpha older than Beta?", "yes", "comparison", {
        "supporting_facts": [["Beta", 0], ["Alpha", 0]], "context": [["Beta", ["b"]], ["Alpha", ["a"]]],
    })
    assert bridge_order(cmp_) == ["Alpha", "Beta"]


def test_lookup_plan_pages_when_no_keyword_is_first():
    sents = ["Cats sleep.", "Cats eat.", "Cats eat fish daily."]
    assert lookup_plan(sents, "Cats eat fish daily.") == ("daily", 1)
    assert lookup_plan(["a b c", "a b"], "a b") is None or lookup_plan(["a b c", "a b"], "a b")[1] >= 1


def _write(tmp_path, recs):
    p = tmp_path / "official.json"
    p.write_text(json.dumps(recs))
    return p


def test_cli_oracle_on_an_official_layout_file(tmp_path, monkeypatch):
    """--data with pages the local wiki lacks: the file's own context pages join the index."""
    monkeypatch.setenv("REACTLAB_HOME", str(tmp_path / "home"))
    corpus = tmp_path / "tiny.jsonl"
    corpus.write_text(json.dumps({"title": "Other", "text": ["Other page."]}) + "\n")
    data = _write(tmp_path, [SYNTH])
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["run", "--agent", "oracle", "--data", str(data), "--corpus", str(corpus),
                                   "--out", str(out), "-q"])
    assert res.exit_code == 0, res.output
    assert "EM=1.000" in res.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n"] == 1 and summary["em"] == 1.0


def test_cli_oracle_needs_supporting_facts(tmp_path):
    data = tmp_path / "simple.json"
    data.write_text(json.dumps([{"question": "q?", "answer": "a"}]))
    res = CliRunner().invoke(app, ["run", "--agent", "oracle", "--data", str(data), "--out", str(tmp_path / "o"), "-q"])
    assert res.exit_code == 2 and "needs gold evidence: 'supporting_facts'" in res.output


@pytest.mark.parametrize("content, needle", [('[{"question": "q"}]', "record 0: field 'answer' missing"),
                                             ('{"question": "q", "answer": 1}\n', ":1: field 'answer' must be str")])
def test_cli_malformed_data_names_file_and_field(tmp_path, content, needle):
    data = tmp_path / "bad.jsonl" if content.startswith("{") else tmp_path / "bad.json"
    data.write_text(content)
    res = CliRunner().invoke(app, ["run", "--agent", "oracle", "--data", str(data), "--out", str(tmp_path / "o"), "-q"])
    assert res.exit_code == 2
    assert str(data) in res.output and needle in res.output
