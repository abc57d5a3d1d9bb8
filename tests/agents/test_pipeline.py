"""The Answer -> Evaluate pipeline: its parser, the turns and roles of an episode, samples and their
vote, hints, the error log, and per-role models through the runner and the CLI."""

import json

import pytest

from reactlab.agents.pipeline import PipelineAgent, parse_choice
from reactlab.config import RunConfig
from reactlab.envs.none import NoToolEnv
from reactlab.llm.scripted import ScriptedLLM
from reactlab.runner import run_from_config
from reactlab.tasks import make_task
from reactlab.types import Completion, Usage

LOGIC = make_task("logic_mcq")
EX = LOGIC.examples("all")[0]  # four options, gold D


@pytest.mark.parametrize(("text", "letter", "how"), [
    ("步骤1：……\n答案是:D", "D", "strict"),
    ("答案是：C", "C", "strict"),  # full-width colon
    ("答案是 : B", "B", "strict"),
    ("答案是　：　B", "B", "strict"),  # full-width spaces
    ("答案是:c", "C", "strict"),  # lower case
    ("答案为：A。", "A", "strict"),
    ("答案：(B)", "B", "strict"),
    ("所以答案是B", "B", "strict"),
    ("Step 1: ...\nAnswer: d", "D", "strict"),
    ("The answer is (A).", "A", "strict"),
    ("答案是:A。\n下一题：……答案是:C", "A", "strict"),  # several: the first ends the reply
    ("答案是:E", "", "none"),  # not an option of a four-option question
    ("我认为应该选C。", "C", "fallback"),
    ("A. le chat\nB. le vache\nC. x\nD. y", "", "none"),  # the options copied back are no answer
    ("我不知道。", "", "none"),
    ("", "", "none"),
])
def test_parse_choice_hand_checked(text, letter, how):
    p = parse_choice(text, 4)
    assert (p.letter, p.how) == (letter, how)


def test_parse_choice_flags_several_answers_and_reads_option_text():
    assert parse_choice("答案是:A\n答案是:C").several and not parse_choice("答案是:A\n答案是:a").several
    assert parse_choice("answer: yes", 2, ["no", "yes"]).letter == parse_choice("yes", 2, ["no", "yes"]).letter == "B"
    assert parse_choice("它是 le chat sauts sur le lune", 4, EX.meta["options"]).how == "none"  # two options match


def _reply(answer="步骤1：想。\n答案是:A", evaluate="检查。\n答案是:D"):
    def reply(q):
        return answer if q.role == "answer" else evaluate
    return reply


def test_answer_then_evaluate_roles_prompts_and_flip(drive):
    agent = PipelineAgent(LOGIC)
    traj, queries = drive(agent, EX, NoToolEnv(), _reply())
    assert [q.role for q in queries] == ["answer", "evaluate"]
    last = queries[1].prompt[-1]["content"]
    assert last.startswith(EX.question) and "步骤1：想。\n答案是:A" in last and "候选答案：A" in last
    assert len(queries[0].prompt) == 3  # one exemplar turn (user + assistant), then the question
    assert traj.answer == "D" and [c.agent for c in traj.children] == ["answer", "evaluate"]
    assert traj.children[1].meta["messages"] == queries[1].prompt  # the row is what was sent
    assert [e["kind"] for e in traj.meta["errors"]] == ["changed"]
    assert agent.scores(EX, traj, LOGIC) == {"candidate_accuracy": 0.0, "fallback": 0.0, "unparsable": 0.0,
                                             "right_to_wrong": 0.0, "wrong_to_right": 1.0}
    assert traj.prompt_id == "logic_mcq_pipeline@1/answer_evaluate" and len(traj.steps) == 2


def test_evaluate_unparsable_keeps_the_candidate_and_logs_it(drive):
    traj, _ = drive(PipelineAgent(LOGIC), EX, NoToolEnv(), _reply("答案是:D", "我不确定。"))
    assert traj.answer == "D"
    assert traj.meta["errors"] == [{"kind": "unparsable", "agent": "evaluate", "raw": "我不确定。",
                                    "action": "kept the candidate D"}]


def test_no_candidate_is_said_to_evaluate(drive):
    traj, queries = drive(PipelineAgent(LOGIC), EX, NoToolEnv(), _reply("嗯。", "答案是:B"))
    assert "候选答案：无（解题者没有给出答案）" in queries[1].prompt[-1]["content"]
    assert traj.answer == "B" and [e["kind"] for e in traj.meta["errors"]] == ["unparsable"]


def test_answer_alone_direct_and_zeroshot(drive):
    traj, queries = drive(PipelineAgent(LOGIC, method="answer"), EX, NoToolEnv(), _reply("答案是:D"))
    assert len(queries) == 1 and traj.answer == "D"
    agent = PipelineAgent(LOGIC, method="direct", prompt="zeroshot")
    traj, queries = drive(agent, EX, NoToolEnv(), _reply("D"))
    assert len(queries[0].prompt) == 1 and queries[0].params.max_new_tokens == 16
    assert traj.answer == "D" and traj.meta["errors"][0]["kind"] == "fallback"
    assert agent.prompt_id == "logic_mcq_pipeline@1:zeroshot/direct"
    traj, queries = drive(PipelineAgent(make_task("mmlu")), make_task("mmlu").examples("dev")[0], NoToolEnv(),
                          _reply("Answer: B", "Answer: B"))
    assert "Candidate answer: B" in queries[1].prompt[-1]["content"] and traj.answer == "B"


def test_zeroshot_roles_drop_the_exemplars_of_those_roles_only(drive):
    agent = PipelineAgent(LOGIC, zeroshot=["evaluate"])
    traj, queries = drive(agent, EX, NoToolEnv(), _reply())
    assert [len(q.prompt) for q in queries] == [3, 1]  # the base Answer keeps its exemplar, Evaluate has none
    assert queries[1].prompt[-1] == PipelineAgent(LOGIC, prompt="zeroshot").prompts["evaluate"].messages(
        "evaluate", EX.question, reasoning="步骤1：想。\n答案是:A", candidate="A", agreement="")[-1]
    assert agent.prompt_id == "logic_mcq_pipeline@1:zeroshot=evaluate/answer_evaluate"
    assert PipelineAgent(LOGIC, prompt="zeroshot", zeroshot=["answer"]).prompt_id == (
        "logic_mcq_pipeline@1:zeroshot/answer_evaluate")  # all zero-shot already
    with pytest.raises(ValueError, match="unknown role 'judge'"):
        PipelineAgent(LOGIC, zeroshot=["judge"])


def test_samples_vote_and_tell_evaluate_the_agreement(drive):
    agent = PipelineAgent(LOGIC, samples=3)

    def reply(q):
        if q.role == "evaluate":
            return "答案是:A"
        assert q.params.n == 3 and q.params.temperature == 0.7 and q.params.seed is not None
        s = [Completion(text=t, usage=Usage(0, 5)) for t in ("答案是:B", "答案是:A", "答案是:B")]
        return Completion(text=s[0].text, samples=s, usage=Usage(100, 5))

    traj, queries = drive(agent, EX, NoToolEnv(), reply)
    assert "候选答案：B（2/3 次独立作答给出这个答案）" in queries[1].prompt[-1]["content"]
    ans = traj.children[0]
    assert ans.answer == "B" and ans.meta["votes"] == 2 and [s["letter"] for s in ans.meta["samples"]] == ["B", "A", "B"]
    assert ans.usage.completion_tokens == 15 and ans.usage.prompt_tokens == 100


def test_hint_is_sent_but_not_kept_for_training(drive):
    traj, queries = drive(PipelineAgent(LOGIC, hint=True), EX, NoToolEnv(), _reply("答案是:D", "答案是:D"))
    assert all("提示：正确答案是 D" in q.prompt[-1]["content"] for q in queries)
    for child in traj.children:
        assert "提示" not in child.meta["train_messages"][-1]["content"]
    assert traj.prompt_id.endswith("+hint")


def test_an_api_failure_is_an_error_episode_and_logged(drive):
    def reply(q):
        return Completion(text="", finish_reason="error", error="HTTP 500") if q.role == "evaluate" else "答案是:D"

    traj, _ = drive(PipelineAgent(LOGIC), EX, NoToolEnv(), reply)
    assert traj.status == "error" and traj.error == "HTTP 500"
    assert traj.meta["errors"][-1]["kind"] == "api_error" and traj.meta["errors"][-1]["agent"] == "evaluate"


def test_runner_routes_roles_writes_the_error_log_and_refuses_hints_on_eval(tmp_path):
    answerer = ScriptedLLM(lambda p: "答案是:A", name="a")
    evaluator = ScriptedLLM(lambda p: "看不出来", name="e")
    cfg = RunConfig(out=str(tmp_path / "r"), task="logic_mcq", agent="pipeline", split="eval", limit=4)
    s = run_from_config(cfg, llms={"answer": answerer, "evaluate": evaluator}, progress=False)
    assert len(answerer.calls) >= 1 and len(evaluator.calls) >= 1
    assert all(m[-1]["content"].endswith("答案是:X") for batch in evaluator.calls for m in batch)
    assert s.errors == {"evaluate/unparsable": 4}
    log = [json.loads(x) for x in (tmp_path / "r" / "errors.jsonl").read_text().splitlines()]
    assert len(log) == 4 and {r["kind"] for r in log} == {"unparsable"} and all(r["id"] for r in log)
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["errors"] == {"evaluate/unparsable": 4} and "candidate_accuracy" in summary["stderr"]
    with pytest.raises(ValueError, match="hint shows the gold answer"):
        run_from_config(RunConfig(out=str(tmp_path / "h"), task="logic_mcq", agent="pipeline", hint=True),
                        llms={"default": answerer}, progress=False)


def test_cli_gives_each_role_its_model(tmp_path):
    from typer.testing import CliRunner

    from reactlab.cli import app

    (tmp_path / "a.json").write_text(json.dumps({"": "步骤1：想。\n答案是:B"}), encoding="utf-8")
    (tmp_path / "e.json").write_text(json.dumps({"": "答案是:B"}), encoding="utf-8")
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["run", "--task", "logic_mcq", "--agent", "pipeline", "--split", "train",
                                   "--limit", "3", "--model", f"answer=scripted:{tmp_path / 'a.json'}",
                                   "--model", f"evaluate=scripted:{tmp_path / 'e.json'}", "--out", str(out), "-q"])
    assert res.exit_code == 0, res.output
    run = json.loads((out / "run.json").read_text())
    assert run["roles"] == {"answer": f"scripted:{tmp_path / 'a.json'}", "evaluate": f"scripted:{tmp_path / 'e.json'}"}
    assert "accuracy=" in res.output and "candidate_accuracy=" in res.output
    res = CliRunner().invoke(app, ["run", "--task", "logic_mcq", "--agent", "pipeline", "--adapter", "answer=x",
                                   "--out", str(tmp_path / "o2"), "-q"])
    assert res.exit_code == 2 and "--adapter answer=... needs a model" in res.output


def test_the_pipeline_runs_on_the_embedded_gemma(gemma_dir, tmp_path):
    """Both turns through the real multilingual model and its chat template (replies cut short)."""
    from reactlab.llm.hf import HFLLM
    from reactlab.runner import RunSpec, run

    llm = HFLLM(gemma_dir, name="gemma3-270m")
    agent = PipelineAgent(LOGIC, max_new_tokens=24, model="gemma3-270m")
    spec = RunSpec("logic_mcq", "train", agent.name, "gemma3-270m", agent.prompt_id)
    s = run(LOGIC.examples("train", limit=2), agent, LOGIC, NoToolEnv, tmp_path, spec, llms=llm, progress=False)
    rows = [json.loads(x) for x in (tmp_path / "trajectories.jsonl").read_text().splitlines()]
    assert s.n == 2 and s.status == {"finished": 2}
    for r in rows:
        assert [c["agent"] for c in r["children"]] == ["answer", "evaluate"]
        assert all(0 < c["usage"]["completion_tokens"] <= 24 for c in r["children"])
        assert r["children"][1]["meta"]["messages"][-1]["content"].startswith(r["question"])
