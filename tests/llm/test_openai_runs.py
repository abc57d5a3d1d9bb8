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
