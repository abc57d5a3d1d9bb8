"""`reactlab demo --task logic_mcq` end to end: the runs on a scripted model that answers by which
adapter it was opened with (so a role given the wrong adapter shows), the two SFT stages on a tiny
random Llama; every stage's output, Evaluate rows from gold only, per-role adapters in the right
role, paired differences in the report, the transfer arms on MMLU, a rerun skipping every stage, bad
options refused."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reactlab.cli import app
from reactlab.data.select import excluded_questions, normalize_question
from reactlab.demo_mcq import ARMS, TRANSFER, run_mcq_demo
from reactlab.demo_report import beyond_letters, paired, prior_letters, run_scores
from reactlab.llm.scripted import ScriptedLLM
from reactlab.tasks import make_task

pytest.importorskip("trl")

N, TRAIN_N, K, TRANSFER_N = 6, 8, 3, 3
FAST = ("trl.max_steps=2", "trl.per_device_train_batch_size=2", "trl.gradient_accumulation_steps=1",
        "trl.per_device_eval_batch_size=4", "trl.logging_steps=1", "trl.save_steps=1", "trl.eval_steps=1",
        "trl.report_to=[]", "trl.disable_tqdm=true", "trl.warmup_steps=0")
STAGES = ("base", "samples", "data-answer", "data-evaluate", "adapter-answer", "adapter-evaluate",
          *(s for s, _ in ARMS), *(f"{TRANSFER}-{s}" for s in ("base", *(s for s, _ in ARMS))))
TASK = make_task("logic_mcq")
GOLD = {e.question: (e.answer, len(e.meta["options"])) for e in TASK.examples("all")}
EVAL = {e.question for e in TASK.examples("eval")}
MMLU = {e.question: (e.answer, len(e.meta["options"])) for e in make_task(TRANSFER).examples("eval", limit=TRANSFER_N,
                                                                                               seed=0)}

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _question(text: str) -> str:
    return next(q for q in GOLD if text.startswith(q))


def _mmlu(text: str) -> tuple[str, int] | None:
    return next((g for q, g in MMLU.items() if q in text), None)


def scripted(adapter: str | None):
    """Replies tagged with who wrote them: the base model answers eval questions wrong and train
    ones right in two samples of three (some right ones with a last step naming another option); its Evaluate
    keeps the candidate; a trained role answers the gold letter; a role asked outside its
    adapter's role says so (``WRONG-ROLE``)."""
    who = Path(adapter).name if adapter else "base"
    count = itertools.count()

    def reply(prompt) -> str:
        text = prompt[-1]["content"]
        if mmlu := _mmlu(text):  # the transfer arms: the same behaviour in English
            gold, n = mmlu
            wrong = "ABCD"[("ABCD".index(gold) + 1) % n]
            if who != "base":
                return f"[{who}] Test each option.\nAnswer: {gold}"
            if "Candidate answer:" in text:
                return f"[base] Keep it.\nAnswer: {text.split('Candidate answer: ')[1][0]}"
            return f"Step 1: [base] reasoning.\nAnswer: {wrong}"
        gold, n = GOLD[_question(text)]
        wrong = "ABCDEFG"[("ABCDEFG".index(gold) + 1) % n]
        evaluate = "另一位解题者" in text
        if who == "adapter-answer" and evaluate or who == "adapter-evaluate" and not evaluate:
            return f"WRONG-ROLE {who}\n答案是:{wrong}"
        if who != "base":
            return f"[{who}] 逐一代入。\n答案是:{gold}"
        if evaluate:
            return f"[base] 保持。\n答案是:{text.split('候选答案：')[1][0]}"
        i = next(count)
        letter = gold if _question(text) not in EVAL and i % 3 else wrong
        step = f"所以选 {wrong}。" if i % 9 == 4 else f"推理 {i}。"
        return f"步骤1：[base] {step}\n答案是:{letter}"

    return reply


@pytest.fixture(scope="module")
def demo(tiny_model_dir, tmp_path_factory):
    """One whole demo: runs on the scripted model (``runner.open_llm`` patched), SFT on the tiny model."""
    mp = pytest.MonkeyPatch()
    opened: list[tuple[str, str | None]] = []

    def open_llm(ref, workers=8):
        opened.append((ref.name, ref.adapter))
        return ScriptedLLM(scripted(ref.adapter))

    mp.setattr("reactlab.runner.open_llm", open_llm)
    out = tmp_path_factory.mktemp("mcq") / "demo"
    opts = dict(model=f"hf:{tiny_model_dir}", n=N, train_n=TRAIN_N, k=K, overrides=FAST, batch_size=4,
                transfer_n=TRANSFER_N, progress=False)
    try:
        yield out, run_mcq_demo(out, **opts), opts, opened
    finally:
        mp.undo()


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def test_every_stage_and_the_report(demo):
    out, result, _, _ = demo
    assert result.stages == dict.fromkeys(STAGES, "ran")
    assert (out / "report.md").read_text() == result.report
    samples = lines(out / "samples/trajectories.jsonl")
    assert len(samples) == TRAIN_N and all(len(t["children"][0]["meta"]["samples"]) == K for t in samples)
    stats = json.loads((out / "data-answer/stats.json").read_text())
    assert stats["role"] == "answer" and stats["role_counts"]["replies"] == TRAIN_N * K
    assert stats["dropped"]["incorrect"] > 0 and stats["dropped"].get("contradicts", 0) > 0
    for role in ("answer", "evaluate"):
        assert (out / f"adapter-{role}/training.json").is_file()
    report = result.report
    assert "prior (most frequent train letter per option count" in report and "chance" in report
    both = next(x for x in report.splitlines() if x.startswith("| both roles trained |"))
    # base pipeline: every answer wrong; both trained: every answer right
    assert f"| {N} | 1.000 ± 0.000 | +100.0 ± 0.0 pts" in both and f"| {N} / 0 |" in both
    # beyond letters: the prior's constant reads nothing; right answers on every question read
    prior_row = next(x for x in report.splitlines() if x.startswith("| prior"))
    assert prior_row.split(" | ")[5] == "+0.0 pts (+0.00)" and float(both.split(" | ")[5].split()[0]) > 10
    assert "reactlab demo --task logic_mcq" in report
    # the transfer arms: a second table on MMLU, its prior from MMLU's validation labels
    transfer = report.split(f"## The same roles on {TRANSFER} ({TRANSFER_N} eval questions")[1]
    assert "prior (most frequent val letter per option count: 4:" in transfer
    both = next(x for x in transfer.splitlines() if x.startswith("| both roles trained |"))
    assert f"| {TRANSFER_N} | 1.000 ± 0.000 | +100.0 ± 0.0 pts" in both
    moved = lines(out / f"{TRANSFER}-both-trained/trajectories.jsonl")
    assert len(moved) == TRANSFER_N and all(t["task"] == TRANSFER for t in moved)


def test_evaluate_rows_carry_the_gold_letter_and_never_an_eval_question(demo):
    out, _, _, _ = demo
    rows = lines(out / "data-evaluate/train.jsonl") + lines(out / "data-evaluate/val.jsonl")
    stats = json.loads((out / "data-evaluate/stats.json").read_text())
    excluded = excluded_questions(["logic_mcq:eval"], [])
    assert rows and stats["role"] == "evaluate_gold"
    for r in rows:
        user, target = r["messages"][0]["content"], r["messages"][1]["content"]
        q = _question(user)
        assert target == f"答案是:{GOLD[q][0]}" and normalize_question(q) not in excluded
        assert "另一位解题者" in user and r["method"] == "evaluate"
    counts = stats["role_counts"]
    assert counts["keeps"] + counts["corrections"] == len(rows) and counts["corrections"] > 0
    # balanced: within an option count, every gold letter that has rows has as many as the others
    mix: dict[str, set[int]] = {}
    for key, v in counts.items():
        if key.startswith("options="):
            mix.setdefault(key.split("/")[0], set()).add(v)
    assert mix and all(len(v) == 1 for v in mix.values())


def test_each_adapter_serves_its_own_role_only(demo):
    out, _, _, opened = demo
    for stage, answer_by, evaluate_by in (("evaluate-trained", "base", "adapter-evaluate"),
                                          ("answer-trained", "adapter-answer", None),
                                          ("both-trained", "adapter-answer", "adapter-evaluate")):
        for t in lines(out / stage / "trajectories.jsonl"):
            kids = {c["agent"]: c for c in t["children"]}
            assert f"[{answer_by}]" in kids["answer"]["steps"][0]["raw"], stage
            if evaluate_by:
                assert f"[{evaluate_by}]" in kids["evaluate"]["steps"][0]["raw"], stage
            assert "WRONG-ROLE" not in json.dumps(t, ensure_ascii=False)
    evaluated = lines(out / "evaluate-trained/trajectories.jsonl")[0]["children"]
    # the base Answer keeps its exemplars, the trained Evaluate runs zero-shot
    assert len(evaluated[0]["meta"]["messages"]) > 1 and len(evaluated[1]["meta"]["messages"]) == 1
    assert {a for _, a in opened if a} == {str(out / "adapter-answer"), str(out / "adapter-evaluate")}


def test_a_rerun_skips_every_stage(demo):
    out, result, opts, _ = demo
    again = run_mcq_demo(out, **opts)
    assert again.stages == dict.fromkeys(STAGES, "skipped") and again.report == result.report


def test_the_prior_baseline_comes_from_train_labels_only(demo):
    out, result, _, _ = demo
    prior = prior_letters([(len(e.meta["options"]), e.answer) for e in TASK.examples("train")])
    evals = [e for e in TASK.examples("eval") if e.id in run_scores(out / "base")]
    acc = sum(prior[len(e.meta["options"])] == e.answer for e in evals) / len(evals)
    row = next(x for x in result.report.splitlines() if x.startswith("| prior"))
    assert ", ".join(f"{n}:{x}" for n, x in prior.items()) in row and f"| {len(evals)} | {acc:.3f} ±" in row
    # the eval split's own prior differs (5 options: none in eval), so a leak would show
    assert prior != prior_letters([(len(e.meta["options"]), e.answer) for e in TASK.examples("eval")])


def test_paired_differences():
    d = paired({"a": 1, "b": 0, "c": 1}, {"a": 1, "b": 1, "c": 0, "z": 1})
    assert d["n"] == 3 and d["gained"] == 1 and d["lost"] == 1 and d["diff"] == 0.0 and d["z"] == 0.0
    d = paired({"a": 1, "b": 1}, {"a": 0, "b": 0})
    assert d["diff"] == 1.0 and d["stderr"] == 0.0


def test_beyond_letters_credits_reading_not_habit():
    exs = TASK.examples("train")
    golds = [(len(e.meta["options"]), e.answer) for e in exs]
    prior = prior_letters(golds)
    habit = beyond_letters([(n, prior[n], g) for n, g in golds])  # the prior's constant: 40%+ right
    assert sum(prior[n] == g for n, g in golds) / len(golds) > 0.4 and habit["diff"] == 0.0
    # letters dealt by the gold distribution but to other questions (per option count, a rotation)
    by_n = {n: [g for m, g in golds if m == n] for n in prior}
    shuffled = beyond_letters([(n, gs[(i + 7) % len(gs)], g) for n, gs in by_n.items() for i, g in enumerate(gs)])
    reading = beyond_letters([(n, g, g) for n, g in golds])
    assert abs(shuffled["diff"]) < reading["diff"] / 3 and reading["z"] > 10


@pytest.mark.parametrize("change, message", [
    ({"k": 1}, "at least 2 samples"),
    ({"n": 500}, "eval split has 239"),
    ({"model": "openai:x"}, "fine-tunes its model"),
    ({"overrides": ("out=elsewhere",)}, "sets out itself"),
    ({"transfer_n": 20_000}, "mmlu eval split has 14042"),
    ({"transfer_n": -1}, "--transfer-n must be >= 0"),
])
def test_bad_options_fail_before_any_stage(tmp_path, tiny_model_dir, change, message):
    out = tmp_path / "demo"
    with pytest.raises(ValueError, match=message):
        run_mcq_demo(out, **(dict(model=f"hf:{tiny_model_dir}", progress=False) | change))
    assert not out.exists()


def test_cli_demo_task_flag(tmp_path):
    res = CliRunner().invoke(app, ["demo", "--task", "logic_mcq", "--k", "1", "--out", str(tmp_path / "d")])
    assert res.exit_code == 2 and "at least 2 samples" in res.output
    res = CliRunner().invoke(app, ["demo", "--task", "fever", "--out", str(tmp_path / "d")])
    assert res.exit_code == 2 and "runs hotpotqa or logic_mcq" in res.output
    res = CliRunner().invoke(app, ["demo", "--transfer-n", "5", "--out", str(tmp_path / "d")])
    assert res.exit_code == 2 and "only the logic_mcq demo has transfer arms" in res.output


def test_the_printed_run_commands_make_the_stages_configs(demo):
    """Each printed `reactlab run` line, parsed by the CLI's own option handling, is its stage's config."""
    import shlex

    from reactlab.cli import role_models
    from reactlab.config import RunConfig, load_config
    from reactlab.demo_mcq import MCQDemo

    out, result, opts, _ = demo
    mcq = MCQDemo(out, opts["model"], N, TRAIN_N, K, batch_size=4, transfer_n=TRANSFER_N)
    runs = [shlex.split(c) for c in result.report.split("```bash")[1].splitlines() if c.startswith("reactlab run")]
    assert len(runs) == 9
    for args in runs:
        flags: dict[str, list[str]] = {}
        for flag, value in zip(args[2::2], args[3::2], strict=True):
            flags.setdefault(flag, []).append(value)
        values = role_models(flags.pop("--model"), flags.pop("--adapter", []))
        overrides = flags.pop("-c", [])
        values |= {k[2:].replace("-", "_"): v[0] for k, v in flags.items()}
        stage = Path(values["out"]).name
        assert load_config(RunConfig, [], overrides, values=values) == mcq.run_config(stage), stage
