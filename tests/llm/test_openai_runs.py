"""A whole ReAct run through the OpenAI backend against a fault-injecting server: every episode is
recorded (finished after retries, or marked failed), none lost, and the key never reaches a file."""

import json

from reactlab.agents.react import ReActAgent
from reactlab.envs.wikienv import WikiEnv
from reactlab.llm.openai_compat import OpenAILLM
from reactlab.runner import RunSpec, run
from reactlab.tasks.hotpotqa import HotpotQA

KEY = "sk-test-RUNSECRET0123456789abcdef"
ANSWER = "ok: I know this one.\nAction 1: Finish[yes]"


def test_faulty_api_run_records_every_episode(vendored_index, fault_server, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    # 6 requests succeed at once, 4 more after a retriable fault each; then every request fails
    actions = [ANSWER] * 6 + ["429:0", ANSWER, "503", ANSWER, "hang:2", ANSWER, "badjson", ANSWER]
    server = fault_server(actions=actions, default="500", echo_auth=True)
    llm = OpenAILLM("m", base_url=server.url, mode="completion", concurrency=4, max_retries=2,
                    timeout=0.5, backoff_base=0.01, backoff_max=0.05)
    exs = HotpotQA().examples("eval", limit=14)
    agent = ReActAgent(model="openai:m")
    spec = RunSpec("hotpotqa", "eval", agent.name, "openai:m", agent.prompt_id)
    s = run(exs, agent, HotpotQA(), lambda: WikiEnv(vendored_index), tmp_path, spec, llms=llm,
            batch_size=8, progress=False)
    text = (tmp_path / "trajectories.jsonl").read_text()
    rows = [json.loads(x) for x in text.splitlines()]
    assert sorted(r["id"] for r in rows) == sorted(e.id for e in exs)  # none lost, none twice
    assert s.status == {"finished": 10, "error": 4}
    for r in rows:
        if r["status"] == "error":
            assert "500" in r["error"] and r["steps"] == []
        else:
            assert r["answer"] == "yes"
    assert KEY not in text and KEY not in (tmp_path / "summary.json").read_text()
    assert KEY not in caplog.text


def test_a_run_refused_by_the_api_fails_then_completes_once_fixed(fault_server, tmp_path, monkeypatch):
    """Every call refused (HTTP 401): the command exits 1 naming the error; after the key is fixed,
    the same command runs every episode again and finishes them all, each id once."""
    from typer.testing import CliRunner

    from reactlab.cli import app

    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    server = fault_server(default="401")
    monkeypatch.setenv("OPENAI_BASE_URL", server.url)
    out = tmp_path / "api"
    args = ["run", "--model", "openai:m", "--limit", "3", "--max-steps", "2", "--out", str(out), "-q"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 1, res.output
    assert "error: every episode failed; the first: HTTP 401" in res.output and KEY not in res.output
    server.default = f"ok:{ANSWER}"
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    rows = [json.loads(x) for x in (out / "trajectories.jsonl").read_text().splitlines()]
    assert sorted(r["status"] for r in rows) == ["finished"] * 3 and len({r["id"] for r in rows}) == 3


def test_pipeline_error_log_through_a_faulty_api(fault_server, tmp_path):
    """Answer -> Evaluate over HTTP: a 500 on the Evaluate call makes the episode an error, logged
    as ``api_error``; an unparsable Evaluate reply keeps the candidate, logged as ``unparsable``; a
    rerun retries the failed episode and the log is rewritten from what the run now holds."""
    from reactlab.agents.pipeline import PipelineAgent
    from reactlab.envs.none import NoToolEnv
    from reactlab.tasks.logic_mcq import LogicMCQ

    task = LogicMCQ()
    exs = task.examples("train", limit=2)
    answer = "ok:步骤1：想。\n答案是:A"
    server = fault_server(actions=[answer, answer, "500", "ok:我不确定。"], default="ok:答案是:B")
    llm = OpenAILLM("m", base_url=server.url, mode="chat", concurrency=1, max_retries=0, timeout=5)
    agent = PipelineAgent(task, model="openai:m")
    spec = RunSpec("logic_mcq", "train", agent.name, "openai:m", agent.prompt_id)
    s = run(exs, agent, task, NoToolEnv, tmp_path, spec, llms=llm, batch_size=2, progress=False)
    log = [json.loads(x) for x in (tmp_path / "errors.jsonl").read_text().splitlines()]
    assert s.status == {"error": 1, "finished": 1}
    assert sorted((r["kind"], r["agent"]) for r in log) == [("api_error", "evaluate"), ("unparsable", "evaluate")]
    kept = next(r for r in log if r["kind"] == "unparsable")
    assert kept["action"] == "kept the candidate A" and kept["raw"] == "我不确定。"
    assert "500" in next(r for r in log if r["kind"] == "api_error")["raw"]
    s = run(exs, agent, task, NoToolEnv, tmp_path, spec, llms=llm, batch_size=2, progress=False)
    assert s.status == {"finished": 2}
    kinds = sorted(r["kind"] for r in map(json.loads, (tmp_path / "errors.jsonl").read_text().splitlines()))
    assert kinds == ["unparsable"]  # the retried episode (B, then B) logs nothing; its api_error is gone
    llm.close()
