"""build_dataset and `reactlab data`: files, stats, no evaluation question in any row, LLaMA-Factory
files that load as their dataset_info.json declares, the CLI."""

import json

import pytest
from typer.testing import CliRunner

from reactlab.agents.react import TOOLS_SYSTEM
from reactlab.data.build import build_dataset
from reactlab.data.cli import data_app
from reactlab.data.formats import row_views
from reactlab.data.select import normalize_question
from reactlab.tasks.hotpotqa import HotpotQA
from reactlab.types import Action


@pytest.fixture(scope="module")
def eval_questions():
    task = HotpotQA()
    return {normalize_question(e.question) for s in ("eval", "paper500") for e in task.examples(s)}


def rows(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def row_question(row, fmt):
    view = row_views(row, fmt)[0][1]
    if isinstance(view, str):
        return view.split("\n", 1)[0].removeprefix("Question: ")
    return next(m["content"] for m in view if m["role"] == "user")


@pytest.fixture
def mixed_run(write_run, mk, hotpot_questions):
    """A run over 6 train-pool questions plus evaluation questions that must never become rows."""
    train = [e.question for e in hotpot_questions["train"]]
    trajs = [mk(q, tid=f"t{i}") for i, q in enumerate(train)]
    trajs += [mk(e.question, tid=f"e{i}") for i, e in enumerate(hotpot_questions["eval"][:3])]
    trajs += [mk(e.question, tid=f"p{i}") for i, e in enumerate(hotpot_questions["paper500"][:3])]
    trajs += [mk(train[0], answer="wrong", tid="w0"), mk(train[1], status="max_steps", tid="m1")]
    return write_run("mixed", trajs)


@pytest.mark.parametrize("fmt", ["messages", "completion", "alpaca", "sharegpt", "openai", "prompts",
                                 "messages-tools", "sharegpt-tools", "openai-tools"])
def test_build_drops_eval_questions_and_reports(tmp_path, mixed_run, eval_questions, fmt):
    out = tmp_path / fmt
    stats = build_dataset([str(mixed_run), "fireact:hotpotqa"], out, fmt, tokenizer=None, val_frac=0.1)
    assert stats["dropped"]["eval_overlap"] == 6
    want = 6 if fmt == "prompts" else 506  # FireAct rows have no gold: no prompt rows
    assert sum(stats["rows"].values()) == want
    all_rows = rows(out / "train.jsonl") + rows(out / "val.jsonl")
    assert len(all_rows) == want
    assert not {normalize_question(row_question(r, fmt)) for r in all_rows} & eval_questions
    if not fmt.startswith("openai"):
        assert {r["source"] for r in all_rows} <= {"mixed", "fireact:hotpotqa"}
        assert all(r["prompt_id"].endswith("/react") for r in all_rows)
    assert json.loads((out / "stats.json").read_text()) == json.loads(json.dumps(stats))
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temp files behind


def test_stats_contents_and_determinism(tmp_path, mixed_run, smol_tok):
    a = build_dataset([str(mixed_run), "fireact:hotpotqa"], tmp_path / "a", "messages", tokenizer=smol_tok,
                      mix_weights={"fireact:hotpotqa": 0.2}, max_steps=4, seed=7)
    build_dataset([str(mixed_run), "fireact:hotpotqa"], tmp_path / "b", "messages", tokenizer=smol_tok,
                      mix_weights={"fireact:hotpotqa": 0.2}, max_steps=4, seed=7)
    assert (tmp_path / "a/train.jsonl").read_bytes() == (tmp_path / "b/train.jsonl").read_bytes()
    assert a["kept_by_source"] == {"mixed": 6, "fireact:hotpotqa": 97}  # round(0.2 * 486)
    assert a["dropped"] == {"eval_overlap": 6, "incorrect": 1, "unfinished": 1, "too_many_steps": 13}
    assert set(a["steps_hist"]) <= {1, 2, 3, 4} and sum(a["steps_hist"].values()) == 103
    assert a["tokens"]["tokenizer"].endswith("smollm2-135m-instruct") and 100 < a["tokens"]["mean"] < 800
    assert sum(a["tokens"]["hist"].values()) == 103 and a["prompt_ids"] == {"chat@1/react": 103}
    train_q = {normalize_question(r["messages"][0]["content"]) for r in rows(tmp_path / "a/train.jsonl")}
    val_q = {normalize_question(r["messages"][0]["content"]) for r in rows(tmp_path / "a/val.jsonl")}
    assert val_q and not train_q & val_q


@pytest.mark.parametrize("fmt", ["alpaca", "sharegpt", "sharegpt-tools"])
@pytest.mark.parametrize("system", [None, "Answer with the tools."])
def test_llamafactory_files_load_as_declared(tmp_path, mixed_run, fmt, system):
    """Read every declared file back with `datasets` through the declared columns and tags, and apply
    LLaMA-Factory's own checks (converter.py: human/observation at odd positions, gpt/function_call at
    even ones, an even number of turns; tools a JSON string)."""
    from datasets import load_dataset

    out = tmp_path / "lf"
    build_dataset([str(mixed_run), "fireact:hotpotqa"], out, fmt, tokenizer=None, system=system, val_frac=0.2)
    info = json.loads((out / "dataset_info.json").read_text())
    assert set(info) == {"lf", "lf_val"}
    for entry in info.values():
        ds = load_dataset("json", data_files=str(out / entry["file_name"]), split="train")
        assert len(ds) == len(rows(out / entry["file_name"])) > 0
        assert entry["formatting"] == fmt.removesuffix("-tools")
        cols = entry["columns"]
        assert set(cols.values()) <= set(ds.column_names)
        expected = system if system is not None or not fmt.endswith("-tools") else TOOLS_SYSTEM
        assert ("system" in cols) == bool(expected)
        for ex in ds:
            if expected:
                assert ex[cols["system"]] == expected
            if fmt == "alpaca":
                assert ex[cols["prompt"]] and ex[cols["query"]] == ""
                assert ex[cols["response"]].startswith("Thought: ") and "Action: finish[" in ex[cols["response"]]
                continue
            tags = entry["tags"]
            turns = ex[cols["messages"]]
            odd = (tags["user_tag"], tags["observation_tag"])
            even = (tags["assistant_tag"], *([tags["function_tag"]] if "function_tag" in tags else []))
            assert all(t[tags["role_tag"]] in (odd, even)[i % 2] for i, t in enumerate(turns))
            last = turns[-1][tags["content_tag"]]
            assert len(turns) % 2 == 0
            if fmt == "sharegpt":
                assert last.startswith("Thought: ") and "tools" not in cols
            else:
                assert [t["function"]["name"] for t in json.loads(ex[cols["tools"]])] == ["search", "lookup", "finish"]
                assert turns[-1][tags["role_tag"]] == "function_call" and '{"name": "finish"' in last


def test_max_rows_is_a_seeded_sample_of_all_sources(tmp_path, mixed_run):
    def build(name, **kw):
        stats = build_dataset([str(mixed_run), "fireact:hotpotqa"], tmp_path / name, "messages", tokenizer=None,
                              val_frac=0.0, **kw)
        return stats, rows(tmp_path / name / "train.jsonl")

    stats, a = build("a", max_rows=20, seed=3)
    assert len(a) == 20 == stats["rows"]["train"] and stats["dropped"]["max_rows"] == 506 - 20
    assert stats["options"]["max_rows"] == 20
    _, full = build("full")
    assert [r for r in full if r in a] == a and a != full[:20]  # a sample in the full build's order, not a prefix
    assert build("b", max_rows=20, seed=3)[1] == a  # deterministic given the seed
    assert build("c", max_rows=20, seed=4)[1] != a
    assert len(build("d", max_rows=10_000)[1]) == 506 and "max_rows" not in build("e", max_rows=506)[0]["dropped"]
    with pytest.raises(ValueError, match="max_rows must be >= 1"):
        build("f", max_rows=0)


def test_preference_builds(tmp_path, write_run, mk, hotpot_questions):
    qs = [e.question for e in hotpot_questions["train"]]
    good = write_run("good", [mk(q, n_steps=2, tid=f"g{i}") for i, q in enumerate(qs)])
    bad = write_run("bad", [mk(q, answer="no", n_steps=2, tid=f"b{i}") for i, q in enumerate(qs[:4])]
                    + [mk(qs[4], status="max_steps", actions=[Action("search", "Z")], tid="b4")])
    stats = build_dataset([str(good), str(bad)], tmp_path / "dpo", "dpo", tokenizer=None, val_frac=0.0)
    out = rows(tmp_path / "dpo/train.jsonl")
    assert stats["rows"]["train"] == 5 == len(out) and stats["dropped"] == {"unpaired": 1}
    assert stats["pairing"] == {"questions": 6, "mixed": 5, "all_right": 1, "all_wrong": 0, "per_question": {1: 1, 2: 5}}
    assert {r["source"] for r in out} == {"good+bad"}
    assert all(r["chosen"][-1]["content"].endswith("Action: finish[y]") for r in out)
    assert all(r["rejected"][-1]["role"] == "assistant" for r in out)  # a step-limited run loses its last observation
    stats = build_dataset([str(good), str(bad)], tmp_path / "kto", "kto", tokenizer=None, val_frac=0.0)
    assert stats["labels"] == {"True": 6, "False": 5}
    kto = rows(tmp_path / "kto/train.jsonl")
    assert {tuple(r) for r in kto} == {("prompt", "completion", "label", "source", "prompt_id")}


def test_acceptance_oracle_train_pool_plus_fireact(tmp_path, vendored_index, smol_tok, eval_questions):
    """The real pipeline: the oracle over the 776-question train pool, then FireAct, then `data build`."""
    from reactlab.agents.oracle import OracleAgent
    from reactlab.envs.wikienv import WikiEnv
    from reactlab.runner import RunSpec, run

    task = HotpotQA()
    run(task.examples("train"), OracleAgent(), task, lambda: WikiEnv(vendored_index), tmp_path / "oracle-train",
        RunSpec("hotpotqa", "train", "oracle", "oracle", "oracle@1"), progress=False)
    stats = build_dataset([str(tmp_path / "oracle-train"), "fireact:hotpotqa"], tmp_path / "ds", "messages",
                          tokenizer=smol_tok)
    all_rows = rows(tmp_path / "ds/train.jsonl") + rows(tmp_path / "ds/val.jsonl")
    assert len(all_rows) == sum(stats["rows"].values()) > 1000
    assert stats["dropped"].get("eval_overlap", 0) > 0  # the pool holds dev questions the paper500 sample drew
    assert not {normalize_question(r["messages"][0]["content"]) for r in all_rows} & eval_questions

    grounded = build_dataset([str(tmp_path / "oracle-train"), "fireact:hotpotqa"], tmp_path / "grounded", "messages",
                             grounded=True, tokenizer=None)
    # FireAct's searches are Google queries, about half the oracle's second titles are not in its first page
    assert 300 < sum(grounded["rows"].values()) < len(all_rows) / 2
    assert grounded["dropped"]["ungrounded"] > 800 and grounded["options"]["grounded"] is True
    kept = rows(tmp_path / "grounded/train.jsonl")
    for row in kept[:50]:  # every search argument was in the question or an earlier observation
        seen = normalize_question(row["messages"][0]["content"])
        for m in row["messages"][1:]:
            if m["role"] == "user":
                seen += " " + normalize_question(m["content"])
            elif "Action: search[" in m["content"]:
                assert normalize_question(m["content"].split("Action: search[", 1)[1].rstrip("]\n")) in seen


def test_cli_build_and_show(tmp_path, mixed_run):
    runner = CliRunner()
    out = tmp_path / "cli"
    res = runner.invoke(data_app, ["build", "--from", str(mixed_run), "--from", "fireact:hotpotqa", "--format",
                                   "sharegpt", "--out", str(out), "--mix", "fireact:hotpotqa=0.1", "--max-steps", "5",
                                   "--val-frac", "0.2", "--seed", "1", "--tokenizer", "none", "--max-rows", "40",
                                   "--option", "observation_role=human"])
    assert res.exit_code == 0, res.output
    shown = json.loads(res.output)
    assert shown["format"] == "sharegpt" and shown["dropped"]["eval_overlap"] == 6
    assert (out / "dataset_info.json").exists()
    assert json.loads((out / "stats.json").read_text())["options"]["observation_role"] == "human"
    assert sum(shown["rows"].values()) == 40
    res = runner.invoke(data_app, ["show", str(out), "--n", "2", "--tokenizer", "none"])
    assert res.exit_code == 0, res.output
    assert res.output.count("=== train.jsonl row") == 2 and "[assistant]\nThought: " in res.output


def test_cli_show_renders_with_the_chat_template(tmp_path, mixed_run):
    out = tmp_path / "msg"
    build_dataset([str(mixed_run)], out, "messages", tokenizer=None, val_frac=0.0)
    res = CliRunner().invoke(data_app, ["show", str(out), "--n", "1"])
    assert res.exit_code == 0, res.output
    assert "<|im_start|>user\n" in res.output and "<|im_start|>assistant\nThought: " in res.output


@pytest.mark.parametrize("fmt", ["messages-tools", "openai-tools", "sharegpt-tools"])
def test_cli_shows_tool_rows_as_the_model_sees_them(tmp_path, mixed_run, fmt):
    """`data show` renders tool rows as ``render_tools_prompt`` does for SmolLM2 (the fallback), with
    or without ``stats.json`` (the format then told from the row's columns)."""
    out = tmp_path / fmt
    build_dataset([str(mixed_run)], out, fmt, tokenizer=None, val_frac=0.0)
    for path in (out, out / "train.jsonl"):
        if path.name == "train.jsonl":
            (out / "stats.json").unlink()
        res = CliRunner().invoke(data_app, ["show", str(path), "--n", "1"])
        assert res.exit_code == 0, res.output
        assert f"=== train.jsonl row 0 ({fmt}" in res.output and "# Tools" in res.output
        assert '<|im_start|>assistant\nStep 1.\n<tool_call>\n{"name": "search", "arguments": {"entity": "T1"}}' in res.output
        assert "<|im_start|>user\n<tool_response>\nT1 is a page.\n</tool_response><|im_end|>" in res.output


def test_cli_reports_malformed_input(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "Q?", "input": "", "output": "Thought: a\\nAction: finish[b]\\n"}\n{"instruction": 1}\n')
    res = CliRunner().invoke(data_app, ["build", "--from", str(bad), "--out", str(tmp_path / "x"), "--tokenizer", "none"])
    assert res.exit_code == 2
    assert "bad.jsonl:2: field 'instruction' must be str, got int" in res.output
    res = CliRunner().invoke(data_app, ["build", "--from", str(bad), "--out", str(tmp_path / "x"), "--format", "nope"])
    assert res.exit_code == 2 and "unknown format 'nope'" in res.output
    good = tmp_path / "good.jsonl"
    good.write_text(bad.read_text().splitlines()[0] + "\n")
    res = CliRunner().invoke(data_app, ["build", "--from", str(good), "--out", str(tmp_path / "x"), "--format", "dpo",
                                        "--grounded", "--tokenizer", "none"])
    assert res.exit_code == 2 and "grounded selects SFT rows" in res.output and not (tmp_path / "x").exists()


def test_prompts_solved_only_keeps_questions_some_run_answered(tmp_path, write_run, mk, hotpot_questions):
    """``solved_only``: GRPO/RLOO prompts only for questions with a right trajectory among the
    sources (a group of episodes that can differ in reward); the others count as ``unsolved``."""
    qs = [e.question for e in hotpot_questions["train"]][:3]
    a = write_run("a", [mk(qs[0], answer="no", tid="a0"), mk(qs[1], answer="no", tid="a1"), mk(qs[2], tid="a2")])
    b = write_run("b", [mk(qs[0], tid="b0"), mk(qs[1], answer="no", tid="b1")])
    stats = build_dataset([str(a), str(b)], tmp_path / "p", "prompts", tokenizer=None, val_frac=0.0,
                          options={"solved_only": True})
    out = rows(tmp_path / "p/train.jsonl")
    assert [r["prompt"][-1]["content"] for r in out] == [qs[0], qs[2]]
    assert stats["dropped"] == {"unsolved": 2, "duplicate": 1} and stats["options"]["solved_only"] is True
    everything = build_dataset([str(a), str(b)], tmp_path / "q", "prompts", tokenizer=None, val_frac=0.0)
    assert everything["rows"]["train"] == 3


def test_prompts_mixed_only_keeps_questions_answered_both_right_and_wrong(tmp_path, write_run, mk, hotpot_questions):
    """``mixed_only``: only questions whose trajectories include a right and a wrong one (a pass rate
    strictly between 0 and 1, measured by earlier samples); all-right ones count as ``all_right``."""
    qs = [e.question for e in hotpot_questions["train"]][:3]
    a = write_run("a", [mk(qs[0], answer="no", tid="a0"), mk(qs[1], answer="no", tid="a1"), mk(qs[2], tid="a2")])
    b = write_run("b", [mk(qs[0], tid="b0"), mk(qs[1], answer="no", tid="b1"), mk(qs[2], tid="b2")])
    stats = build_dataset([str(a), str(b)], tmp_path / "p", "prompts", tokenizer=None, val_frac=0.0,
                          options={"mixed_only": True})
    assert [r["prompt"][-1]["content"] for r in rows(tmp_path / "p/train.jsonl")] == [qs[0]]
    assert stats["dropped"] == {"unsolved": 2, "all_right": 2, "duplicate": 1}
    res = CliRunner().invoke(data_app, ["build", "--from", str(a), "--out", str(tmp_path / "x"), "--format", "prompts",
                                        "--option", "mixed_only=maybe", "--tokenizer", "none"])
    assert res.exit_code == 2 and "mixed_only" in res.output and not (tmp_path / "x").exists()


def test_tool_rows_carry_the_system_text_the_tools_style_sends(tmp_path, mixed_run):
    """A tools-style run sends ``TOOLS_SYSTEM``; rows built for it carry the same text unless told
    otherwise (``system=""``: none), so a model is trained on the prompt it will be run with."""
    build_dataset([str(mixed_run)], tmp_path / "a", "messages-tools", tokenizer=None, val_frac=0.0)
    build_dataset([str(mixed_run)], tmp_path / "b", "messages-tools", tokenizer=None, val_frac=0.0, system="")
    build_dataset([str(mixed_run)], tmp_path / "c", "messages", tokenizer=None, val_frac=0.0)
    assert {r["messages"][0]["content"] for r in rows(tmp_path / "a/train.jsonl")} == {TOOLS_SYSTEM}
    assert {r["messages"][0]["role"] for r in rows(tmp_path / "b/train.jsonl")} == {"user"}
    assert {r["messages"][0]["role"] for r in rows(tmp_path / "c/train.jsonl")} == {"user"}
