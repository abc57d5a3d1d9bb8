"""bench/mcq_gold_direct.py: direct rows from TRAIN gold letters only, balanced per option count,
each prompt what a zero-shot direct pipeline agent sends."""

import json
import sys
from collections import Counter

from reactlab.agents.pipeline import PipelineAgent
from reactlab.data.select import normalize_question
from reactlab.envs.none import NoToolEnv
from reactlab.tasks import make_task

TASK = make_task("logic_mcq")


def test_rows_balanced_from_train_gold_only(load_bench, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["mcq_gold_direct.py", "--out", str(tmp_path / "d")])
    load_bench("mcq_gold_direct").main()
    rows = [json.loads(x) for p in ("train", "val") for x in (tmp_path / "d" / f"{p}.jsonl").read_text().splitlines()]
    stats = json.loads((tmp_path / "d" / "stats.json").read_text())
    assert sum(stats["rows"].values()) == len(rows) and 0 < stats["rows"]["val"] < stats["rows"]["train"] / 10
    train = {normalize_question(e.question): e for e in TASK.examples("train")}
    evals = {normalize_question(e.question) for e in TASK.examples("eval")}
    per: dict[int, Counter] = {}
    agent = PipelineAgent(TASK, method="direct", prompt="zeroshot")
    for r in rows[:20]:  # the prompt the zero-shot direct agent sends, byte for byte
        e = next(e for e in TASK.examples("train") if r["messages"][0]["content"].startswith(e.question))
        assert r["messages"][:1] == next(agent.episode(e, NoToolEnv())).prompt
    for r in rows:
        e = next(e for q, e in train.items() if r["messages"][0]["content"].startswith(e.question))
        assert normalize_question(e.question) not in evals and r["messages"][1]["content"] == f"答案是:{e.answer}"
        per.setdefault(len(e.meta["options"]), Counter())[e.answer] += 1
    assert all(len(set(c.values())) == 1 and len(c) == n for n, c in per.items())  # letters equal per count
    assert stats["counts"]["balance"] == len(TASK.examples("train")) - len(rows)
