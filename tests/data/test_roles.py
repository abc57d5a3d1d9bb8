"""Rows for each role of the Answer -> Evaluate pipeline: right replies only, the zero-shot prompt
byte for byte, hints left out, rejection sampling over samples, corrections counted, eval guarded."""

import itertools
import json
from collections import Counter

from reactlab.agents.pipeline import PipelineAgent
from reactlab.config import RunConfig
from reactlab.data.build import build_dataset
from reactlab.envs.none import NoToolEnv
from reactlab.llm.scripted import ScriptedLLM
from reactlab.runner import run_from_config
from reactlab.tasks import make_task

TASK = make_task("logic_mcq")


def _rows(path):
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


def _sent_zeroshot(example, role, **fields):
    """What a zero-shot pipeline agent sends for ``role`` (driven by hand)."""
    agent = PipelineAgent(TASK, prompt="zeroshot")
    gen = agent.episode(example, NoToolEnv())
    q = next(gen)
    if role == "evaluate":
        q = gen.send(__import__("reactlab.types", fromlist=["Completion"]).Completion(text=fields["reply"]))
    return q.prompt


def test_answer_rows_by_rejection_sampling_and_evaluate_corrections(tmp_path):
    exs = TASK.examples("train", limit=6)
    gold = {e.question: e.answer for e in exs}
    wrong = {e.question: "ABCD"[("ABCD".index(e.answer) + 1) % len(e.meta["options"])] for e in exs}
    flip = itertools.cycle([True, False, True, False])  # majorities: right, wrong, right, ... (3 samples each)

    def reply(prompt):
        text = prompt[-1]["content"]
        q = next(k for k in gold if text.startswith(k))
        if "另一位解题者" in text:  # Evaluate: always right
            return f"逐一代入。\n答案是:{gold[q]}"
        return f"步骤1：推理。\n答案是:{gold[q] if next(flip) else wrong[q]}"

    run = tmp_path / "run"
    cfg = RunConfig(out=str(run), task="logic_mcq", agent="pipeline", split="train", limit=6, answer_samples=3)
    run_from_config(cfg, llms={"default": ScriptedLLM(reply)}, progress=False)
    stats = build_dataset([str(run)], tmp_path / "ans", "messages", role="answer", tokenizer=None, val_frac=0.0)
    rows = _rows(tmp_path / "ans" / "train.jsonl")
    # 6 questions x 3 samples; the right samples share one text per question: one row each, rest duplicate
    assert stats["role_counts"]["replies"] == 18 and len(rows) == 6
    assert stats["dropped"]["incorrect"] + stats["dropped"]["duplicate"] == 12
    ex = exs[0]
    row = next(r for r in rows if r["messages"][0]["content"].startswith(ex.question))
    assert row["messages"][:1] == _sent_zeroshot(ex, "answer")  # byte for byte what the agent sends
    assert row["messages"][1]["content"].endswith(f"答案是:{ex.answer}")
    assert row["prompt_id"] == "logic_mcq_pipeline@1:zeroshot/answer" and row["method"] == "answer"

    stats = build_dataset([str(run)], tmp_path / "ev", "alpaca", role="evaluate", tokenizer=None, val_frac=0.0)
    rows = _rows(tmp_path / "ev" / "train.jsonl")
    trajs = _rows(run / "trajectories.jsonl")
    assert len(rows) == 6 and 0 < stats["role_counts"]["corrections"] == sum(
        t["children"][0]["answer"] != t["gold"] for t in trajs)
    t0 = next(t for t in trajs if t["id"] == ex.id)
    assert rows[[r["instruction"].startswith(ex.question) for r in rows].index(True)]["instruction"] == (
        t0["children"][1]["meta"]["messages"][-1]["content"])
    assert json.loads((tmp_path / "ev" / "dataset_info.json").read_text())["ev"]["formatting"] == "alpaca"


def test_hinted_runs_train_on_the_prompt_without_the_hint_and_eval_questions_never_enter(tmp_path):
    run = tmp_path / "hint"
    cfg = RunConfig(out=str(run), task="logic_mcq", agent="pipeline", method="answer", split="train", limit=3,
                    hint=True)
    run_from_config(cfg, llms={"default": ScriptedLLM(
        lambda p: "推理。\n答案是:" + p[-1]["content"].split("正确答案是 ")[1][0])}, progress=False)
    build_dataset([str(run)], tmp_path / "d", "messages", role="answer", tokenizer=None, val_frac=0.0)
    rows = _rows(tmp_path / "d" / "train.jsonl")
    assert len(rows) == 3 and not any("提示" in r["messages"][0]["content"] for r in rows)

    ev = tmp_path / "ev"
    run_from_config(RunConfig(out=str(ev), task="logic_mcq", agent="pipeline", method="answer", limit=2),
                    llms={"default": ScriptedLLM(lambda p: "答案是:A")}, progress=False)
    stats = build_dataset([str(ev)], tmp_path / "d2", "messages", role="answer", tokenizer=None, val_frac=0.0)
    assert stats["dropped"] == {"eval_overlap": 2} and stats["rows"] == {"train": 0, "val": 0}


def test_a_reply_that_repeats_the_hint_is_dropped(tmp_path):
    run = tmp_path / "leak"
    cfg = RunConfig(out=str(run), task="logic_mcq", agent="pipeline", method="answer", split="train", limit=2,
                    hint=True)

    def reply(p):
        gold = p[-1]["content"].split("正确答案是 ")[1][0]
        return f"提示：正确答案是 {gold}。\n答案是:{gold}" if "题 1" in p[-1]["content"] else f"推理。\n答案是:{gold}"

    run_from_config(cfg, llms={"default": ScriptedLLM(reply)}, progress=False)
    stats = build_dataset([str(run)], tmp_path / "d", "messages", role="answer", tokenizer=None, val_frac=0.0)
    rows = _rows(tmp_path / "d" / "train.jsonl")
    assert stats["dropped"].get("hint_leak", 0) >= 1 and all("提示" not in r["messages"][1]["content"] for r in rows)
    assert len(rows) + stats["dropped"]["hint_leak"] == 2


def test_answer_rows_whose_last_step_names_another_option_are_dropped(tmp_path):
    from reactlab.data.roles import contradicts

    # hand-made cases: a cue naming the answer, another option, none, letters as names of people
    assert not contradicts("步骤1：比较。\n步骤2：对应选项 B。\n答案是:B", "B")
    assert contradicts("步骤1：比较。\n步骤2：所以选 A。\n答案是:B", "B")
    assert contradicts("步骤1：正确选项应是 C。\n答案是:D", "D")
    assert not contradicts("步骤1：A 比 B 高，C 最矮。\n答案是:D", "D")
    assert not contradicts("步骤1：选项 A 不对。\n步骤2：剩下的成立。\n答案是:C", "C")  # only the last step counts
    assert contradicts("Step 1: so option c.\nAnswer: D", "D")

    replies = itertools.cycle(["步骤1：所以选 {w}。\n答案是:{g}", "步骤1：对应选项 {g}。\n答案是:{g}"])

    def reply(p):
        gold = next(e.answer for e in TASK.examples("train", limit=4) if p[-1]["content"].startswith(e.question))
        return next(replies).format(g=gold, w="B" if gold == "A" else "A")

    run = tmp_path / "run"
    run_from_config(RunConfig(out=str(run), task="logic_mcq", agent="pipeline", method="answer", split="train",
                              limit=4), llms={"default": ScriptedLLM(reply)}, progress=False)
    stats = build_dataset([str(run)], tmp_path / "d", "messages", role="answer", tokenizer=None, val_frac=0.0)
    rows = _rows(tmp_path / "d" / "train.jsonl")
    assert stats["dropped"] == {"contradicts": 2} and len(rows) == 2
    assert all("对应选项" in r["messages"][1]["content"] for r in rows)


def test_evaluate_rows_from_gold_every_answer_sample_balanced_per_option_count(tmp_path):
    exs = TASK.examples("train", limit=12)
    by_q = {e.question: e for e in exs}
    count = itertools.count()

    def reply(p):
        e = by_q[next(q for q in by_q if p[-1]["content"].startswith(q))]
        letters = "ABCDEFG"[: len(e.meta["options"])]
        return f"步骤1：推理 {next(count)}。\n答案是:{letters[next(count) % len(letters)]}"

    run = tmp_path / "run"
    run_from_config(RunConfig(out=str(run), task="logic_mcq", agent="pipeline", method="answer", split="train",
                              limit=12, answer_samples=4), llms={"default": ScriptedLLM(reply)}, progress=False)
    stats = build_dataset([str(run)], tmp_path / "d", "messages", role="evaluate_gold", tokenizer=None, val_frac=0.0)
    rows = _rows(tmp_path / "d" / "train.jsonl")
    counts = stats["role_counts"]
    assert counts["replies"] == 48 and counts["keeps"] + counts["corrections"] == len(rows) > 0
    assert stats["dropped"].get("balance", 0) + len(rows) == 48
    golds = {}
    for r in rows:
        e = by_q[next(q for q in by_q if r["messages"][0]["content"].startswith(q))]
        assert r["messages"][1]["content"] == f"答案是:{e.answer}" and r["method"] == "evaluate"
        assert r["prompt_id"] == "logic_mcq_pipeline@1:zeroshot/evaluate"
        golds.setdefault(len(e.meta["options"]), Counter())[e.answer] += 1
        # byte for byte what a zero-shot pipeline sends after that Answer reply
        cand = r["messages"][0]["content"].split("候选答案：")[1][0]
        reasoning = r["messages"][0]["content"].split("另一位解题者的推理如下：\n")[1].split("\n候选答案")[0]
        assert r["messages"][:1] == _sent_zeroshot(e, "evaluate", reply=reasoning)
        assert reasoning.endswith(f"答案是:{cand}")
    assert all(len(set(c.values())) == 1 for c in golds.values())  # each option count: letters equal
    assert all(set(c) == set("ABCDEFG"[:n]) for n, c in golds.items())  # every letter of its option count
    assert {k: v for k, v in counts.items() if k.startswith("options=")} == {
        f"options={n}/gold={x}": v for n, c in golds.items() for x, v in c.items()}

    ev = tmp_path / "ev"  # eval questions never become rows
    run_from_config(RunConfig(out=str(ev), task="logic_mcq", agent="pipeline", method="answer", limit=2),
                    llms={"default": ScriptedLLM(lambda p: "答案是:A")}, progress=False)
    stats = build_dataset([str(ev)], tmp_path / "d2", "messages", role="evaluate_gold", tokenizer=None)
    assert stats["dropped"] == {"eval_overlap": 2} and stats["rows"] == {"train": 0, "val": 0}


def test_evaluate_rows_from_gold_keep_replies_without_an_answer_line_as_the_pipeline_sends_them(tmp_path):
    """A reply with no answer line still reaches the Evaluate agent (with its fallback letter, or
    saying there is no candidate): its row is that prompt, byte for byte, so the role is trained on
    the inputs it meets."""
    exs = TASK.examples("train", limit=40)
    kinds = itertools.cycle(["strict", "fallback", "none"])
    replies = {e.question: {"strict": "步骤1：推理。\n答案是:B", "fallback": "步骤1：所以选A。",
                            "none": f"步骤1：{i} 号题，没有想清楚"}[next(kinds)] for i, e in enumerate(exs)}

    def reply(p):
        return next(r for q, r in replies.items() if p[-1]["content"].startswith(q))

    run = tmp_path / "run"
    run_from_config(RunConfig(out=str(run), task="logic_mcq", agent="pipeline", method="answer", split="train",
                              limit=40), llms={"default": ScriptedLLM(reply)}, progress=False)
    stats = build_dataset([str(run)], tmp_path / "d", "messages", role="evaluate_gold", tokenizer=None, val_frac=0.0)
    rows = _rows(tmp_path / "d" / "train.jsonl")
    counts = stats["role_counts"]
    assert counts["replies"] == 40 and set(stats["dropped"]) <= {"balance"}
    assert counts["keeps"] + counts["corrections"] + counts["no_candidate"] == len(rows)
    assert counts["no_candidate"] > 0 and counts["keeps"] + counts["corrections"] > 0
    by_q = {e.question: e for e in exs}
    for r in rows:
        q = next(q for q in by_q if r["messages"][0]["content"].startswith(q))
        assert r["messages"][:1] == _sent_zeroshot(by_q[q], "evaluate", reply=replies[q])
    assert any("没有给出答案" in r["messages"][0]["content"] for r in rows)
    assert any("所以选A。\n候选答案：A" in r["messages"][0]["content"] for r in rows)
