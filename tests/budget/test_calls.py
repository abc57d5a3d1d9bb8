"""Per-call rows rebuilt from runs are the prompts the agent sent; greedy labels are deterministic;
call features need only the prompt text; a saved call predictor predicts without scikit-learn."""

from __future__ import annotations

import hashlib
import json
import re
import socket

import pytest

from reactlab.agents.react import ReActAgent
from reactlab.budget.calls import (
    CallRow,
    call_features,
    call_head,
    fit_call_predictor,
    load_call_predictor,
    read_calls,
    save_call_predictor,
)
from reactlab.budget.labels import build_budget, load_budget, run_identity
from reactlab.envs.wikienv import WikiEnv
from reactlab.llm.scripted import ScriptedLLM
from reactlab.runner import RunSpec, run
from reactlab.tasks.hotpotqa import HotpotQA


def _steps_of(question: str) -> int:
    return 1 + int(hashlib.sha256(question.encode()).hexdigest(), 16) % 3


def reply(prompt: str) -> str:
    """A greedy stand-in: the answer depends only on the prompt (its question and step), so two runs
    of the same questions must generate the same steps and tokens."""
    ep = prompt[prompt.rindex("\nQuestion: ") + 1:]
    question = ep.split("\n", 1)[0]
    i = int(re.findall(r"Thought (\d+):$", ep)[0])
    words = " ".join(["so"] * (2 + len(question) % 5 + i))
    if i < _steps_of(question):
        return f" I search {words}.\nAction {i}: Search[{question.split()[-1].strip('?')}]"
    return f" Done {words}.\nAction {i}: Finish[yes]"


def greedy_run(index, out, limit=12, seen=None):
    def answer(prompt):
        if seen is not None:
            seen.append(prompt)
        return reply(prompt)

    task, agent = HotpotQA(), ReActAgent(model="scripted")
    spec = RunSpec("hotpotqa", "train", "react", "scripted", agent.prompt_id, method="react",
                   settings={"max_steps": 7, "decoding": {"temperature": 0.0}})
    run(task.examples("train", limit=limit), agent, task, lambda: WikiEnv(index), out, spec,
        llms=ScriptedLLM(answer), batch_size=4, progress=False)
    return out


@pytest.fixture(scope="module")
def runs(vendored_index, tmp_path_factory):
    """Two labelling runs of the same 12 questions and a repeat of 6 of them, one configuration."""
    root = tmp_path_factory.mktemp("greedy")
    seen: list[str] = []
    return {"a": greedy_run(vendored_index, root / "a", seen=seen), "a2": greedy_run(vendored_index, root / "a2"),
            "b": greedy_run(vendored_index, root / "b", limit=6), "seen": seen}


def _labels(d):
    data = load_budget(d)
    return sorted((r.question, r.steps, r.tokens, r.bucket, r.label_set, r.split)
                  for rows in data.rows.values() for r in rows)


def test_greedy_labels_are_identical_across_two_labelling_runs(runs, tmp_path):
    build_budget([str(runs["a"])], tmp_path / "a", val_frac=0.3)
    build_budget([str(runs["a2"])], tmp_path / "a2", val_frac=0.3)
    assert _labels(tmp_path / "a") == _labels(tmp_path / "a2") and len(_labels(tmp_path / "a")) == 12
    calls = [sorted((c.prompt, c.tokens) for c in read_calls(tmp_path / d / "calls" / "train.jsonl"))
             for d in ("a", "a2")]
    assert calls[0] == calls[1] and calls[0]
    # the label set is the run's identity; a repeat of the same configuration is its noise ceiling
    (name,) = {r[4] for r in _labels(tmp_path / "a")}
    assert name.startswith("react/react scripted hotpotqa_react@1/react greedy #")
    stats = build_budget([str(runs["a"])], tmp_path / "r", val_frac=0.3, repeat=[str(runs["b"])])
    ceiling = stats["noise_ceiling"]
    assert ceiling["steps"]["n"] == 6 and ceiling["steps"]["exact"] == 1.0 and ceiling["bucket"]["exact"] == 1.0
    assert ceiling["call_bucket"]["exact"] == 1.0 and ceiling["steps"]["ci"]["exact"] == [1.0, 1.0]


def test_a_repeat_of_another_configuration_is_refused(runs, tmp_path):
    a, b = runs["a"], runs["b"]
    spec = json.loads((b / "run.json").read_text())
    other = tmp_path / "other"
    other.mkdir()
    (other / "trajectories.jsonl").write_text((b / "trajectories.jsonl").read_text())
    (other / "run.json").write_text(json.dumps(spec | {"model": "another"}))
    assert run_identity(str(other))["model"] == "another"
    with pytest.raises(ValueError, match="is not one of the --from runs'"):
        build_budget([str(a)], tmp_path / "x", repeat=[str(other)])


def test_call_rows_are_the_prompts_the_agent_sent(runs, tmp_path):
    a, seen = runs["a"], runs["seen"]
    build_budget([str(a)], tmp_path / "c", val_frac=0.3, targets=["call_tokens"])
    assert not (tmp_path / "c" / "train.jsonl").exists()  # call rows only
    prefix = ReActAgent().prefix
    rows = [c for s in ("train", "val", "test") for c in read_calls(tmp_path / "c" / "calls" / f"{s}.jsonl")]
    assert len(rows) == len(seen) and sorted(prefix + c.prompt for c in rows) == sorted(seen)
    stats = json.loads((tmp_path / "c" / "stats.json").read_text())
    assert stats["call_edges"] and len(stats["call_buckets"]) == len(stats["call_edges"]) + 1
    for c in rows:
        assert c.tokens == len(reply(prefix + c.prompt).split())  # the scripted model counts words


def test_call_features_need_only_the_prompt_text_and_no_network(monkeypatch):
    def no_network(*a, **k):
        raise AssertionError("network used")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    prefix = ReActAgent().prefix
    ep = ("Question: Who is older, Ed Wood or Tim Burton?\nThought 1: Search Ed Wood.\nAction 1: Search[Ed Wood]\n"
          "Observation 1: Could not find Ed Wood. Similar: ['Ed Wood (film)', 'Edward Wood'].\n"
          "Thought 2: Try again.\nAction 2: Search[Ed Wood]\nObservation 2: Could not find Ed Wood.\nThought 3:")
    f = call_features(prefix + ep)
    assert f == call_features(ep)  # the exemplars before the last question do not count
    assert (f["step"], f["head=thought"], f["prev=search"], f["repeated_action"], f["notfound_total"]) == (
        3.0, 1.0, 1.0, 1.0, 2.0)
    assert f["question_entities"] == 2.0 and f["obs_notfound"] == 1.0
    assert (f["entity_first_chars"], f["entity_max_chars"]) == (7.0, 10.0)  # "Ed Wood", "Tim Burton"
    act = call_features("Question: Who?\nAction 1: Lookup[x]\nObservation 1: (Result 1 / 2) x.\nAction 2:")
    assert act["head=action"] == 1.0 and act["prev=lookup"] == 1.0 and act["obs_result"] == 1.0
    assert call_features("Question: Who?\nThought: Let's think step by step.")["head=cot"] == 1.0


def _rows(n=120):
    """Calls whose token count follows the step and whether the last search failed."""
    out = []
    for i in range(n):
        step = 1 + i % 4
        failed = i % 3 == 0 and step > 1
        obs = "".join(f"Thought {k}: go.\nAction {k}: Search[X{i}]\nObservation {k}: "
                      f"{'Could not find X.' if failed else 'X is a thing.'}\n" for k in range(1, step))
        out.append(CallRow(prompt=f"Question: q{i}?\n{obs}Thought {step}:", tokens=10 + 8 * step + (25 if failed else 0),
                           question=f"q{i}", step=step))
    return out


@pytest.mark.parametrize("kind", ["mean", "mode", "head", "step", "ridge", "gbm", "ridge+words", "gbm+words"])
def test_call_predictor_saves_loads_and_predicts_from_text(kind, tmp_path):
    rows = _rows()
    p = fit_call_predictor(kind, rows, [20, 30, 45])
    path = save_call_predictor(p, tmp_path / "cp")
    q = load_call_predictor(tmp_path / "cp")
    assert path.name == "call_predictor.json"
    preds = [q.predict_tokens(r.prompt) for r in rows]
    assert preds == [p.predict_tokens(r.prompt) for r in rows] and all(isinstance(x, float) for x in preds)
    if kind in ("mean", "mode", "head"):  # every call here is a ReAct step: one kind
        assert len(set(preds)) == 1
    elif kind == "step":  # the mean of each step's training calls: one value a step
        means = {k: sum(r.tokens for r in rows if r.step == k) / sum(r.step == k for r in rows) for k in range(1, 5)}
        assert preds == pytest.approx([means[r.step] for r in rows])
        chat = "Who?\nThought: go.\nAction: search[X]\nObservation: X."
        assert q.predict_tokens(chat) == pytest.approx(p.model["constant"])  # a kind it never saw: the constant
    else:  # the signal is in the text: steps and failed searches
        err = sum(abs(x - r.tokens) for x, r in zip(preds, rows, strict=True)) / len(rows)
        assert err < (5 if kind == "gbm" else 12), err


def test_load_call_predictor_refuses_other_records(tmp_path):
    from reactlab.io import DataError

    (tmp_path / "p.json").write_text(json.dumps({"kind": "features"}))
    with pytest.raises(DataError, match="not a call predictor"):
        load_call_predictor(tmp_path / "p.json")
    with pytest.raises(FileNotFoundError):
        load_call_predictor(tmp_path / "none")


def test_the_head_baseline_predicts_each_kind_of_call_its_own_mean(tmp_path):
    """A mixed workload (ReAct steps and CoT answers): ``head`` knows the kind, nothing more; the eval's
    ``call_head`` filter scores one kind alone."""
    from reactlab.budget.evaluate import evaluate_targets

    react = _rows()
    cot = [CallRow(prompt=f"Question: c{i}?\nThought: Let's think step by step.", tokens=100 + 10 * (i % 3),
                   question=f"c{i}", method="cot") for i in range(12)]
    assert {call_head(r.prompt) for r in react} == {"thought"} and {call_head(r.prompt) for r in cot} == {"cot"}
    p = fit_call_predictor("head", react + cot, [50])
    assert p.predict_tokens(cot[0].prompt) == pytest.approx(110.0)
    assert p.predict_tokens(react[0].prompt) == pytest.approx(sum(r.tokens for r in react) / len(react))
    assert p.predict_tokens("Question: x?\nAnswer:") == pytest.approx(p.model["constant"])  # an unseen kind

    root = tmp_path / "b"
    (root / "calls").mkdir(parents=True)
    for split, rows in (("train", react[::2] + cot[::2]), ("test", react[1::2] + cot[1::2])):
        (root / "calls" / f"{split}.jsonl").write_text(
            "".join(json.dumps(r.to_dict() | {"split": split, "bucket": int(r.tokens >= 50)}) + "\n" for r in rows))
    for split in ("train", "val", "test"):
        (root / f"{split}.jsonl").write_text("")
    (root / "stats.json").write_text(json.dumps({"edges": [], "call_edges": [50]}))
    both = evaluate_targets(root, ["call_tokens"], split="test", n_boot=20)["call_tokens"]
    second = evaluate_targets(root, ["call_tokens"], split="test", n_boot=20, call_step=2)["call_tokens"]
    assert second["calls"] == sum(r.step == 2 for r in react[1::2])
    assert second["predictors"]["step"]["tau"] != second["predictors"]["step"]["tau"]  # one step: nothing ranked
    assert second["predictors"]["gbm"]["tau"] > 0.5  # the failed search still ranks within the step
    alone = evaluate_targets(root, ["call_tokens"], split="test", n_boot=20, call_head="cot")["call_tokens"]
    assert both["calls"] == len(react[1::2]) + 6 and alone["calls"] == 6
    tau = alone["predictors"]["head"]["tau"]
    assert both["predictors"]["head"]["tau"] > 0.3 and tau != tau  # kinds rank; within one, nothing (nan)
    with pytest.raises(ValueError, match="unknown call head 'step'"):
        evaluate_targets(root, ["call_tokens"], split="test", n_boot=20, call_head="step")


def chat_reply(messages) -> str:
    """The chat agent's stand-in: search once, then finish; as many words as the question has letters mod 5."""
    question, step = messages[0]["content"], (len(messages) + 1) // 2
    words = " ".join(["so"] * (2 + len(question) % 5 + step))
    if step == 1:
        return f"Thought: I search {words}.\nAction: search[{question.split()[-1].strip('?')}]"
    return f"Thought: Done {words}.\nAction: finish[yes]"


def test_chat_rows_are_the_text_a_server_reads(vendored_index, tmp_path):
    """A zero-shot chat run (a fine-tuned agent's layout) gives one call row per step, whose prompt is
    ``prompt_text`` of the messages the agent sent: what ``serve --schedule sjf:PATH`` reads."""
    from reactlab.types import prompt_text

    seen: list[str] = []

    def answer(messages):
        seen.append(prompt_text(messages))
        return chat_reply(messages)

    task, agent = HotpotQA(), ReActAgent(model="scripted", style="chat")
    spec = RunSpec("hotpotqa", "train", "react", "scripted", agent.prompt_id, method="react",
                   settings={"max_steps": 7, "decoding": {"temperature": 0.0}})
    out = tmp_path / "run"
    run(task.examples("train", limit=8), agent, task, lambda: WikiEnv(vendored_index), out, spec,
        llms=ScriptedLLM(answer), batch_size=4, progress=False)
    stats = build_budget([str(out)], tmp_path / "c", val_frac=0.3, targets=["call_tokens"])
    assert stats["calls_dropped"] == {}
    rows = [c for s in ("train", "val", "test") for c in read_calls(tmp_path / "c" / "calls" / f"{s}.jsonl")]
    assert len(rows) == 16 and sorted(c.prompt for c in rows) == sorted(seen)
    for c in rows:
        f = call_features(c.prompt)
        assert call_head(c.prompt) == "chat" and f["head=chat"] == 1.0 and f["step"] == c.step
        assert f["question_chars"] == len(c.question) and f["prev=search"] == float(c.step == 2)


def _recording(directory, exchanges):
    """A ``serve --record`` recording: one exchange per (request text, reply text, completion tokens);
    the last also carries tools (another layout)."""
    from reactlab.serve.record import Recorder

    rec = Recorder(directory)
    for i, (text, reply_text, tokens) in enumerate(exchanges):
        body = {"messages": [{"role": "user", "content": text}], "model": "smollm2", "max_tokens": 128}
        if i == len(exchanges) - 1:
            body["tools"] = [{"type": "function", "function": {"name": "search", "parameters": {}}}]
        rec.record(f"c{i}", body, {"role": "assistant", "content": reply_text}, "stop",
                   {"prompt_tokens": 9, "completion_tokens": tokens, "total_tokens": 9 + tokens})
    rec.close()


def test_a_server_recording_gives_one_call_row_per_exchange_and_labels_calls_only(tmp_path):
    from reactlab.budget.calls import record_rows

    exchanges = [(f"Explain in detail: question {i}?", "long " * 40, 60 + i % 5) for i in range(20)]
    exchanges += [(f"Answer in one word: question {i}?", "Paris", 3 + i % 2) for i in range(20)]
    _recording(tmp_path / "rec", [*exchanges, ("Search this.", "", 7)])
    rows, dropped = record_rows(tmp_path / "rec", lambda q: "train", "srv")
    assert dropped == {"tools": 1}
    assert [(r.prompt, r.tokens, r.question, r.step, r.label_set) for r in rows[:1]] == [
        ("Explain in detail: question 0?", 60, "Explain in detail: question 0?", 1, "srv")]
    stats = build_budget([f"srv={tmp_path / 'rec'}"], tmp_path / "b", val_frac=0.25)
    assert stats["targets"] == ["call_tokens"] and stats["recordings"] and stats["runs"] == 0
    assert sum(stats["calls"].values()) == 40 and stats["calls"]["val"] > 0
    assert not (tmp_path / "b" / "train.jsonl").exists()  # no episode rows from a recording
    from reactlab.budget.evaluate import evaluate_targets

    scores = evaluate_targets(tmp_path / "b", ["call_tokens"], call_predictors=["mean", "gbm+words"], split="val")
    gbm = scores["call_tokens"]["predictors"]["gbm+words"]  # a kind of predictor eval fits itself
    assert gbm["within1"] == 1.0 and gbm["tau"] > 0.4
    with pytest.raises(ValueError, match="labels only --target call_tokens"):
        build_budget([str(tmp_path / "rec")], tmp_path / "c", targets=["steps"])


def test_the_opening_words_of_a_request_let_a_predictor_tell_kinds_apart():
    """Two kinds of request of the same length, word count and entities, told apart only by their words."""
    long_q = [f"explain fully: who founded city number {i}?" for i in range(40)]
    short_q = [f"answer curtly: who founded city number {i}?" for i in range(40)]
    rows = [CallRow(prompt=q, tokens=100 + i % 3) for i, q in enumerate(long_q)]
    rows += [CallRow(prompt=q, tokens=5 + i % 3) for i, q in enumerate(short_q)]
    p = fit_call_predictor("gbm+words", rows, [20, 60])
    assert p.predict_tokens("explain fully: who built the bridge?") > 80
    assert p.predict_tokens("answer curtly: who built the bridge?") < 20
    blind = fit_call_predictor("gbm", rows, [20, 60])  # the agent's features alone cannot
    assert abs(blind.predict_tokens("explain fully: who built the bridge?")
               - blind.predict_tokens("answer curtly: who built the bridge?")) < 1
    f = call_features("Explain in detail: x")
    assert sum(f[f"word{b}"] for b in range(16)) == 4.0 == sum(call_features("Explain  in DETAIL: y")[f"word{b}"]
                                                                 for b in range(16))
