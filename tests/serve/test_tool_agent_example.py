"""The example of an agent that is not ours (examples/openai_tool_agent.py) against `serve --record`:
its tool loop, its EM, and the recording with its labels built into training rows."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from reactlab.data.recorded import build_recorded
from reactlab.llm.scripted import ScriptedLLM
from reactlab.serve import serve
from reactlab.tasks import make_task

pytest.importorskip("openai")
EXAMPLE = Path(__file__).parents[2] / "examples" / "openai_tool_agent.py"


def call(name: str, arg: str, value: str) -> str:
    return f'<tool_call>\n{json.dumps({"name": name, "arguments": {arg: value}})}\n</tool_call>'


class Searcher(ScriptedLLM):
    """Searches the question's first supporting page, then answers: the gold answer for the first
    question, a wrong one for the others (so EM and the labels' rewards differ)."""

    def __init__(self, tokenizer, examples):
        self.tokenizer = tokenizer
        gold = {ex.question: ex.answer for ex in examples}

        def reply(prompt: str) -> str:
            question = next(q for q in gold if q in prompt)
            if "<tool_response>" not in prompt:
                return "I will search.\n" + call("search", "entity", "Scott Derrickson")
            return call("finish", "answer", gold[question] if question == examples[0].question else "no idea")

        super().__init__(reply, name="searcher")


@pytest.mark.slow
def test_the_example_agent_is_recorded_and_its_rows_built(tmp_path, smollm2_dir, vendored_index, monkeypatch):
    from transformers import AutoTokenizer

    spec = importlib.util.spec_from_file_location("openai_tool_agent", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    monkeypatch.setattr(example, "get_index", lambda: _Same(vendored_index))
    examples = make_task("hotpotqa").examples("train", limit=3)
    rec, labels = tmp_path / "rec", tmp_path / "labels.jsonl"
    with serve(Searcher(AutoTokenizer.from_pretrained(smollm2_dir), examples), record=str(rec)) as server:
        em = example.main(["--base-url", server.url + "/v1", "--split", "train", "--n", "3",
                           "--labels", str(labels), "--run", "t"])
    assert em == pytest.approx(1 / 3)
    assert [json.loads(x)["reward"] for x in labels.read_text().splitlines()] == [1.0, 0.0, 0.0]
    stats = build_recorded([str(rec)], tmp_path / "out", labels, min_reward=1.0, val_frac=0.0)
    assert stats["conversations"] == 3 and stats["rows"]["train"] == 1 and stats["dropped"] == {"low_reward": 2}
    [row] = [json.loads(x) for x in (tmp_path / "out" / "train.jsonl").read_text().splitlines()]
    assert row["conversation_id"] == f"t-{examples[0].id}" and row["tools"] == example.TOOLS
    assert [m["role"] for m in row["messages"]] == ["system", "user", "assistant", "tool", "assistant"]
    assert row["messages"][3]["content"].startswith("Scott Derrickson")  # the wiki's answer to the search
    assert row["messages"][4]["tool_calls"][0]["function"] == {"name": "finish",
                                                               "arguments": {"answer": examples[0].answer}}


class _Same:
    """The session's open index as a context manager that leaves it open."""

    def __init__(self, index):
        self.index = index

    def __enter__(self):
        return self.index

    def __exit__(self, *exc):
        return None
