"""`reactlab demo` end to end on a tiny random Llama: every stage's output and the report, the
contamination guard, the printed commands reproduce their stages, a rerun skips every stage, a cut
training resumes from its checkpoint, and bad or changed options fail before any stage runs."""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reactlab.cli import app
from reactlab.config import load_config, split_specs
from reactlab.data.select import excluded_questions, normalize_question
from reactlab.demo import run_demo
from reactlab.io import DataError
from reactlab.tasks.hotpotqa import HotpotQA
from reactlab.train.recipes import SFTRecipe
from reactlab.train.stages import ADAPTER_FILES

pytest.importorskip("trl")

N, ROWS = 3, 12
# Training short enough for a test: 2 updates of 2 rows, a checkpoint after each, no TensorBoard.
FAST = ("trl.max_steps=2", "trl.per_device_train_batch_size=2", "trl.gradient_accumulation_steps=1",
        "trl.per_device_eval_batch_size=4", "trl.logging_steps=1", "trl.save_steps=1", "trl.report_to=[]",
        "trl.disable_tqdm=true", "trl.warmup_steps=0")
STAGES = ("baseline", "oracle-train", "data", "adapter", "finetuned")


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def options(tiny_model_dir, vendored_index) -> dict:
    return dict(model=f"hf:{tiny_model_dir}", n=N, train_rows=ROWS, overrides=FAST, max_steps=2, batch_size=4,
                index=vendored_index, progress=False)


@pytest.fixture(scope="module")
def demo(options, tmp_path_factory):
    """One whole demo, shared by the checks on its outputs (which must leave it as they found it)."""
    out = tmp_path_factory.mktemp("demo") / "demo"
    return out, run_demo(out, **options)


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def test_every_stage_and_the_report(demo, tiny_model_dir):
    out, result = demo
    assert result.stages == dict.fromkeys(STAGES, "ran")
    wanted = [e.id for e in HotpotQA().examples("eval", limit=N)]
    for stage, prompt_id in (("baseline", "hotpotqa_react@1/react"), ("finetuned", "chat@1/react")):
        trajs = lines(out / stage / "trajectories.jsonl")
        assert sorted(t["id"] for t in trajs) == sorted(wanted)  # the same first N eval questions in both arms
        assert {t["prompt_id"] for t in trajs} == {prompt_id}
        summary = json.loads((out / stage / "summary.json").read_text())
        model = f"hf:{tiny_model_dir}" + (f"+{out / 'adapter'}" if stage == "finetuned" else "")
        assert summary["n"] == N and summary["run"]["model"] == model
    assert json.loads((out / "oracle-train/summary.json").read_text())["n"] == len(HotpotQA().examples("train"))
    stats = json.loads((out / "data/stats.json").read_text())
    assert sum(stats["rows"].values()) == ROWS == stats["options"]["max_rows"] and stats["format"] == "messages"
    assert stats["dropped"]["max_rows"] > 0 and set(stats["kept_by_source"]) == {"oracle-train", "fireact:hotpotqa"}
    assert stats["options"]["grounded"] is True and stats["dropped"]["ungrounded"] > 0
    for f in (*ADAPTER_FILES, "loss.png"):
        assert (out / "adapter" / f).is_file(), f
    info = json.loads((out / "adapter/training.json").read_text())
    assert info["result"]["steps"] == 2 and info["base_model"] == f"hf:{tiny_model_dir}"
    assert info["recipe"]["lora"]["r"] == 16 and info["recipe"]["trl"]["save_steps"] == 1  # recipe, then -c

    report = (out / "report.md").read_text()
    assert report == result.report
    (base, tuned) = [line for line in report.splitlines() if line.startswith(("| baseline |", "| finetuned |"))]
    assert "few-shot ReAct" in base and "LoRA SFT, zero-shot chat" in tuned
    for row, stage in zip(result.rows, ("baseline", "finetuned"), strict=True):
        summary = json.loads((out / stage / "summary.json").read_text())
        assert (row.arm, row.summary.n, row.summary.main, row.summary.wall_s) == (
            stage, N, summary["em"], summary["wall_s"])
    assert "ΔEM (fine-tuned − baseline)" in report and "[adapter/loss.png](adapter/loss.png)" in report
    assert f"{ROWS - stats['rows']['val']} train + {stats['rows']['val']} val rows" in report
    page = (out / "report.html").read_text()  # the two arms in the browsable page, with the loss curve
    assert ">baseline<" in page and ">finetuned<" in page and "Training loss" in page
    assert len(info["result"]["extra"]["log_history"]) >= 2


def test_no_evaluation_question_becomes_a_row(demo):
    out, _ = demo
    rows = lines(out / "data/train.jsonl") + lines(out / "data/val.jsonl")
    questions = {normalize_question(r["messages"][0]["content"]) for r in rows}
    assert len(rows) == ROWS
    assert not questions & excluded_questions()  # eval and paper500
    assert not questions & {normalize_question(e.question) for e in HotpotQA().examples("eval", limit=N)}
    stats = json.loads((out / "data/stats.json").read_text())
    assert stats["dropped"]["eval_overlap"] > 0  # the guard did drop questions: the pool holds paper500 ones
    assert {"hotpotqa:eval", "hotpotqa:paper500", "fever:eval", "mmlu:eval"} <= set(stats["options"]["exclude_splits"])


def commands(report: str, prefix: str) -> list[list[str]]:
    return [shlex.split(x) for x in report.splitlines() if x.startswith(prefix)]


def test_printed_commands_reproduce_their_stages(demo, tmp_path, tiny_model_dir):
    out, result = demo
    (args,) = commands(result.report, "reactlab data build")
    args[args.index("--out") + 1] = str(tmp_path / "data")
    res = CliRunner().invoke(app, args[1:])
    assert res.exit_code == 0, res.output
    for f in ("train.jsonl", "val.jsonl"):
        assert (tmp_path / "data" / f).read_bytes() == (out / "data" / f).read_bytes(), f
    (args,) = commands(result.report, "reactlab train sft")
    files, overrides = split_specs([a for flag, a in zip(args, args[1:], strict=False) if flag == "-c"])
    recipe = load_config(SFTRecipe, files, overrides).model_dump(mode="json")
    assert recipe == json.loads((out / "adapter/training.json").read_text())["recipe"]
    base, oracle, tuned = commands(result.report, "reactlab run ")
    model = f"hf:{tiny_model_dir}"
    assert base[2:] == ["--model", model, "--split", "eval", "--limit", str(N), "--max-steps", "2",
                        "--batch-size", "4", "--out", str(out / "baseline")]
    assert oracle[2:] == ["--split", "train", "--agent", "oracle", "--out", str(out / "oracle-train")]
    assert tuned[2:] == ["--model", model, "--adapter", str(out / "adapter"), "--split", "eval", "--limit", str(N),
                         "--style", "chat", "--prompt", "zeroshot", "--max-steps", "2", "--batch-size", "4",
                         "--out", str(out / "finetuned")]


def test_a_rerun_skips_every_stage(demo, options):
    out, first = demo
    watched = [out / s / f for s in ("baseline", "finetuned", "oracle-train") for f in ("trajectories.jsonl", "summary.json")]
    watched += [out / "data/train.jsonl", out / "data/stats.json", out / "adapter/adapter_model.safetensors",
                out / "adapter/training.json"]
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in watched}
    again = run_demo(out, **options)
    assert again.stages == dict.fromkeys(STAGES, "skipped")
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in watched} == before  # nothing rerun or retrained
    assert again.rows == first.rows and again.report == first.report


def test_changed_options_are_refused_before_anything_runs(demo, options):
    out, _ = demo
    with pytest.raises(DataError, match=r"data: was made from other inputs \(max_rows: 12 there vs 13 now\)"):
        run_demo(out, **(options | {"train_rows": ROWS + 1}))
    with pytest.raises(DataError, match=r"adapter: was made from other inputs \(lora.r: 16 there vs 4 now\)"):
        run_demo(out, **(options | {"overrides": (*FAST, "lora.r=4")}))
    with pytest.raises(DataError, match="baseline: was made from other inputs"):
        run_demo(out, **(options | {"model": "smollm2"}))
    with pytest.raises(DataError, match=r"baseline: was made from other inputs \(settings.max_steps: 2 there vs 3"):
        run_demo(out, **(options | {"max_steps": 3}))  # the runner's whole identity check, made before any stage
    stats_file = out / "data/stats.json"
    kept = stats_file.read_text()
    stats = json.loads(kept)
    del stats["options"]["grounded"]  # data built before the grounded filter
    stats_file.write_text(json.dumps(stats))
    try:
        with pytest.raises(DataError, match=r"data: was made from other inputs \(grounded: False there vs True now\)"):
            run_demo(out, **options)
    finally:
        stats_file.write_text(kept)


def test_a_cut_training_resumes_from_its_checkpoint(demo, options, tmp_path):
    out = tmp_path / "demo"
    shutil.copytree(demo[0], out)
    for f in ADAPTER_FILES:  # as if killed after the first checkpoint
        (out / "adapter" / f).unlink()
    shutil.rmtree(out / "adapter/checkpoint-2")
    with pytest.raises(DataError, match="finetuned: holds trajectories of an earlier adapter"):
        run_demo(out, **options)
    shutil.rmtree(out / "finetuned")
    result = run_demo(out, **options)
    assert result.stages == {"baseline": "skipped", "oracle-train": "skipped", "data": "skipped",
                             "adapter": "resumed", "finetuned": "ran"}
    info = json.loads((out / "adapter/training.json").read_text())
    assert info["result"]["extra"]["resumed"] is True and info["result"]["steps"] == 2
    assert "resumed from a checkpoint" in result.report


GRPO_FAST = ("num_generations=2", "max_episode_steps=2", "max_new_tokens=8", "trl.max_steps=1",
             "trl.per_device_train_batch_size=2", "trl.logging_steps=1", "trl.report_to=[]", "trl.disable_tqdm=true")


def test_the_opt_in_grpo_stage_adds_a_row(demo, options, tmp_path):
    """``grpo_minutes`` continues the SFT adapter with GRPO (wiki in the loop), evaluates it on the
    same questions as a third row; the earlier stages are reused; the printed commands include it."""
    out = tmp_path / "demo"
    shutil.copytree(demo[0], out)
    shutil.rmtree(out / "finetuned")  # its run.json names the adapter by the original (absolute) path
    opts = options | {"grpo_minutes": 5, "grpo_overrides": GRPO_FAST}
    result = run_demo(out, **opts)
    assert result.stages == {"baseline": "skipped", "oracle-train": "skipped", "data": "skipped", "adapter": "skipped",
                             "finetuned": "ran", "grpo-data": "ran", "grpo": "ran", "grpo-finetuned": "ran"}
    assert [r.arm for r in result.rows] == ["baseline", "finetuned", "grpo-finetuned"]
    info = json.loads((out / "grpo/training.json").read_text())
    assert info["trainer"] == "grpo" and info["recipe"]["model"]["adapter"] == str(out / "adapter")
    assert info["result"]["steps"] == 1 and info["recipe"]["max_minutes"] == 5
    evaluated = json.loads((out / "grpo-finetuned/run.json").read_text())
    assert evaluated["model"].endswith(str(out / "grpo")) and len(lines(out / "grpo-finetuned/trajectories.jsonl")) == N
    assert "ΔEM (SFT + GRPO − SFT)" in result.report and "**GRPO** (`grpo/`)" in result.report
    assert "reactlab train grpo" in result.report and "--grpo-minutes 5" in result.report
    assert (out / "report.html").read_text().count("grpo-finetuned") >= 1
    assert run_demo(out, **opts).stages["grpo"] == "skipped"
    with pytest.raises(DataError, match=r"grpo: was made from other inputs \(max_new_tokens: 8 there vs 9 now"):
        run_demo(out, **opts | {"grpo_overrides": (*GRPO_FAST, "max_new_tokens=9")})
    with pytest.raises(ValueError, match="give --grpo-minutes"):
        run_demo(out, **options | {"grpo_overrides": GRPO_FAST})
    with pytest.raises(ValueError, match="the demo sets model.adapter itself"):
        run_demo(out, **opts | {"grpo_overrides": ("model.adapter=/x",)})


@pytest.mark.parametrize(("change", "message"), [
    ({"n": 0}, "--n must be >= 1, got 0"),
    ({"n": 10_000}, "the HotpotQA eval split has 491 questions"),
    ({"train_rows": 0}, "--train-rows must be >= 1"),
    ({"batch_size": 0}, "--batch-size must be >= 1"),
    ({"model": "openai:gpt-4o-mini"}, "must be a named model"),
    ({"overrides": ["out=/elsewhere"]}, "the demo sets out itself"),
    ({"overrides": ["data.path=/elsewhere"]}, "the demo sets data.path itself"),
    ({"overrides": ["lora"]}, "KEY=VALUE"),
    ({"overrides": ["lora.rr=4"]}, r"lora.rr: unknown key"),
    ({"overrides": ["trl.learning_rat=1e-4"]}, "did you mean learning_rate"),
    ({"overrides": ["method=full"]}, "the demo evaluates a LoRA adapter"),
    ({"recipe": "nope.yaml"}, "nope.yaml: no such recipe"),
])
def test_bad_options_fail_clearly_before_any_stage(tmp_path, tiny_model_dir, change, message):
    out = tmp_path / "demo"
    opts = dict(model=f"hf:{tiny_model_dir}", n=N, train_rows=ROWS, progress=False) | change
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        run_demo(out, **opts)
    assert not out.exists()


def test_cli_demo_reports_bad_flags(tmp_path):
    res = CliRunner().invoke(app, ["demo", "--n", "0", "--out", str(tmp_path / "d")])
    assert res.exit_code == 2 and "error: --n must be >= 1" in res.output
    res = CliRunner().invoke(app, ["demo", "-c", "model.name=other", "--out", str(tmp_path / "d")])
    assert res.exit_code == 2 and "the demo sets model.name itself" in res.output
    assert not (tmp_path / "d").exists()


def test_cli_and_api_share_the_default_row_count():
    import inspect

    from reactlab.cli import demo_cmd
    from reactlab.demo import TRAIN_ROWS, Demo

    assert inspect.signature(demo_cmd).parameters["train_rows"].default == TRAIN_ROWS
    assert inspect.signature(run_demo).parameters["train_rows"].default == TRAIN_ROWS == Demo(Path(".")).train_rows


@pytest.mark.parametrize("framework, trainer", [("torch", "reactlab.train.sft.train_sft"),
                                                ("jittor", "reactlab.train.jittor.train.train_sft_jittor")])
def test_the_sft_stage_trains_with_the_recipes_framework(tmp_path, monkeypatch, framework, trainer):
    """`reactlab demo -c framework=jittor` trains in Jittor, as `reactlab train sft --framework jittor` does."""
    from reactlab import demo as demo_module

    called: list[str] = []
    module, name = trainer.rsplit(".", 1)
    monkeypatch.setattr(f"{module}.{name}", lambda cfg, resume=False: called.append(name))
    cfg = load_config(SFTRecipe, ["sft_smollm2_lora"], [f"data.path={tmp_path}", f"out={tmp_path / 'a'}",
                                                        f"framework={framework}"])
    assert demo_module._train_stage(cfg, say=lambda _: None) == "ran"
    assert called == [name]
